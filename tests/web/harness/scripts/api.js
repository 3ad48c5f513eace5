// Stand-in for ComfyUI's scripts/api.js: an EventTarget like the real one (which dispatches the server's websocket
// events on itself); fetchApi prefixes /api as the real one does, and the request goes to the real price handler. Tests may hold a request back (api.hold) so that answers arrive out of order; no
// request or answer is ever changed.
export const api = Object.assign(new EventTarget(), {
  requests: [],   // {route, body} of every call, in order
  inflight: 0,    // calls whose answer has not been fully received yet
  hold: null,     // (body) => a promise to wait for before sending, or null to send at once

  async fetchApi(route, options = {}) {
    const body = options.body ? JSON.parse(options.body) : null;
    this.requests.push({ route, body });
    this.inflight += 1;
    try {
      await this.hold?.(body);
      const res = await fetch("/api" + route, options);
      await res.clone().arrayBuffer();   // fully received: inflight === 0 means every answer is in the page
      return res;
    } finally {
      this.inflight -= 1;
    }
  },
});
