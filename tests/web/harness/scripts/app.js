// Stand-in for ComfyUI's scripts/app.js: an `app` whose registerExtension records the extension. The harness
// (harness.js) plays the rest of the host: it creates nodes and calls the extensions' nodeCreated, as ComfyUI
// does, and draws the nodes' badges on a real canvas, as LiteGraph does.
export const app = {
  extensions: [],

  registerExtension(extension) {
    this.extensions.push(extension);
  },
};
