// The HappyHorse tab in ComfyUI's sidebar: the ledger's jobs (newest first), set-up at a glance, and actions
// (open / download the video, copy the task id, add a Collect Job node, cancel). The server pushes a
// "happyhorse.job" event over ComfyUI's websocket whenever a job changes; the page never polls. A frontend without
// sidebar tabs simply gets no tab.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const EVENT = "happyhorse.job";
const ACTIVE = new Set(["submitting", "queued", "running", "downloading"]);
const STATE_COLORS = { done: "#1f5130", failed: "#6b1f1f", cancelled: "#555", uncertain: "#7a5a12", stopped: "#5a4a20" };
const jobs = new Map();       // ledger id -> job, as the server describes it, plus receivedAt (ms)
let status = null;            // GET /happyhorse/status
let root = null;              // the tab's element while it is shown
let clock = null;             // ticks elapsed / remaining on screen while jobs run and the tab is shown
let message = "";
const previews = new Map();   // ledger id -> its <video>, kept across renders so a preview does not reload

async function getJSON(route, options) {
  const res = await api.fetchApi(route, options);
  const body = await res.json();
  if (!res.ok) throw new Error(body.error ?? `HTTP ${res.status}`);
  return body;
}

async function load() {
  try {
    const [list, st] = await Promise.all([getJSON("/happyhorse/jobs?limit=50"), getJSON("/happyhorse/status")]);
    jobs.clear();
    const now = Date.now();
    for (const job of list.jobs) jobs.set(job.id, { ...job, receivedAt: now });
    status = st;
  } catch (error) {
    message = `Could not read the jobs: ${error.message}`;
  }
  render();
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "style") Object.assign(node.style, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) if (child != null) node.append(child);
  return node;
}

function seconds(s) {
  if (s == null) return "";
  s = Math.max(0, Math.round(s));
  return s < 90 ? `${s}s` : s < 5400 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
}

function money(job) {
  if (job.cost_usd != null) return job.cost_usd === 0 ? "free" : `${job.cost_usd.toFixed(2)} USD`;
  if (job.estimate_usd != null) return `~${job.estimate_usd.toFixed(2)} USD`;
  return job.state === "done" ? "cost unknown" : "";
}

function clockText(job) {
  if (!ACTIVE.has(job.state)) return `${seconds((Date.now() / 1000) - job.created_at)} ago`;
  const since = (Date.now() - job.receivedAt) / 1000;
  const left = job.remaining_s == null ? "" : job.remaining_s - since > 0 ? `, ~${seconds(job.remaining_s - since)} left` : ", any moment now";
  return `${seconds(job.elapsed_s + since)} elapsed${left}`;
}

function videoURL(job, download) {
  return api.apiURL(`/happyhorse/jobs/${job.id}/video${download ? "?download=1" : ""}`);
}

async function copyTaskId(job) {
  try {
    await navigator.clipboard.writeText(job.task_id);
    message = `Copied task id ${job.task_id}`;
  } catch {
    message = `Task id (select and copy): ${job.task_id}`;
  }
  render();
}

// The way back into the graph after a restart: a Collect Job node set to this job's provider and task id.
function addCollectNode(job) {
  const node = globalThis.LiteGraph?.createNode?.("HappyHorsePack.CollectJob");
  if (!node || !app.graph) {
    message = "This ComfyUI cannot add nodes from here; add a Collect Job node and paste the task id.";
    render();
    return;
  }
  // In the middle of what the canvas shows, so the user sees it arrive.
  const [x, y, w, h] = app.canvas?.visible_area ?? [0, 0, 0, 0];
  node.pos = [x + w / 2 - (node.size?.[0] ?? 0) / 2, y + h / 2 - (node.size?.[1] ?? 0) / 2];
  app.graph.add(node);
  app.canvas?.selectNode?.(node);
  for (const [name, value] of [["provider", job.provider], ["task_id", job.task_id]]) {
    const widget = node.widgets?.find((w) => w.name === name);
    if (widget) {
      widget.value = value;
      widget.callback?.(value, app.canvas, node);
    }
  }
  app.graph.setDirtyCanvas?.(true, true);
  message = `Added a Collect Job node for task ${job.task_id}; run the graph to fetch the video.`;
  render();
}

async function cancel(job) {
  try {
    message = (await getJSON(`/happyhorse/jobs/${job.id}/cancel`, { method: "POST" })).message;
  } catch (error) {
    message = error.message;
  }
  render();
}

function spendBlock() {
  const spend = status?.spend;
  if (!spend) return null;
  const names = Object.fromEntries((status.setup?.providers ?? []).map((p) => [p.name, p.display_name]));
  const period = (p) => {
    const title = p.period.charAt(0).toUpperCase() + p.period.slice(1);
    const limit = p.limit_usd != null ? ` of ${p.limit_usd.toFixed(2)} USD` : "";
    const unknown = p.unknown_price_jobs ? `, ${p.unknown_price_jobs} job(s) of unknown price not counted` : "";
    const lines = Object.entries(p.by_provider).map(([name, v]) => el("div", { class: "hh-sub", "data-provider": name },
      `${names[name] ?? name}: ${v.usd.toFixed(2)} USD, ${v.jobs} job(s)` +
      (v.unknown_price_jobs ? `, ${v.unknown_price_jobs} of unknown price` : "")));
    return el("div", { "data-period": p.period }, el("b", {}, `${title}: ${p.usd.toFixed(2)} USD${limit}`), unknown, lines);
  };
  return el("section", { class: "hh-spend" }, el("b", {}, "Spend"), period(spend.today), period(spend.month));
}

function setupBlock() {
  const setup = status?.setup;
  if (!setup) return null;
  const keys = setup.providers.filter((p) => p.needs_key).map((p) =>
    el("span", { class: "hh-chip", style: { background: p.has_key ? "#1f5130" : "#444" }, title: p.key_env },
      `${p.display_name}: ${p.has_key ? "key set" : "no key"}`));
  return el("section", { class: "hh-setup" },
    el("div", {}, ...keys),
    el("div", { class: "hh-sub" }, `Upload bucket: ${setup.upload_bucket ? "configured" : "none"} · DashScope region: ${setup.dashscope_region}`),
    ...setup.hints.map((h) => el("div", { class: "hh-hint" }, h)));
}

function preview(job) {
  if (!previews.has(job.id)) {
    previews.set(job.id, el("video", { src: videoURL(job), preload: "metadata", muted: "", controls: "", class: "hh-video" }));
  }
  return previews.get(job.id);
}

function jobRow(job) {
  const title = [job.provider_name, job.mode, job.version, job.resolution, job.duration_s ? `${job.duration_s}s` : ""]
    .filter(Boolean).join(" · ");
  const actions = [];
  if (job.has_video) {
    actions.push(el("a", { href: videoURL(job), target: "_blank", rel: "noopener" }, "Open"));
    actions.push(el("a", { href: videoURL(job, true) }, "Download"));
  }
  if (job.task_id) actions.push(el("button", { onclick: () => copyTaskId(job), "data-action": "copy" }, "Copy task id"));
  if (job.can_collect) actions.push(el("button", { onclick: () => addCollectNode(job), "data-action": "collect" }, "Add Collect Job node"));
  if (job.can_cancel) actions.push(el("button", { onclick: () => cancel(job), "data-action": "cancel" }, "Cancel"));
  return el("li", { class: "hh-job", "data-job": job.id, "data-state": job.state },
    el("div", {},
      el("span", { class: "hh-state", style: { background: STATE_COLORS[job.state] ?? "#2b4a6b" } }, job.state),
      " ", el("b", {}, title), " ", el("span", { class: "hh-sub" }, money(job))),
    el("div", { class: "hh-sub", "data-clock": job.id }, clockText(job)),
    job.prompt ? el("div", { class: "hh-prompt" }, job.prompt) : null,
    job.reason ? el("div", { class: "hh-reason" }, job.reason) : null,
    job.note ? el("div", { class: "hh-sub" }, job.note) : null,
    job.has_video ? preview(job) : null,
    el("div", { class: "hh-actions" }, actions));
}

const STYLE = `
.hh-panel{padding:8px;font-size:12px;display:flex;flex-direction:column;gap:8px;overflow:auto;height:100%}
.hh-panel section{display:flex;flex-direction:column;gap:3px}
.hh-panel ul{list-style:none;margin:0;padding:0;display:flex;flex-direction:column;gap:8px}
.hh-job{border:1px solid #444;border-radius:6px;padding:6px}
.hh-state{color:#fff;border-radius:4px;padding:0 5px}
.hh-chip{color:#fff;border-radius:4px;padding:0 5px;margin:0 4px 2px 0;display:inline-block}
.hh-sub{opacity:.75}.hh-hint{color:#e0c060}.hh-reason{color:#f08080}
.hh-prompt{font-style:italic;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.hh-video{width:100%;max-height:160px;margin-top:4px;background:#000}
.hh-actions{display:flex;gap:6px;flex-wrap:wrap;margin-top:4px}
.hh-actions a,.hh-actions button{font-size:11px;color:inherit;background:#333;border:1px solid #555;border-radius:4px;padding:1px 6px;cursor:pointer;text-decoration:none}
`;

function render() {
  if (!root) return;
  const list = [...jobs.values()].sort((a, b) => b.created_at - a.created_at);
  root.replaceChildren(el("div", { class: "hh-panel" },
    el("style", {}, STYLE),
    el("div", {}, el("b", {}, "HappyHorse jobs"), " ",
      el("button", { onclick: load, "data-action": "refresh", class: "hh-actions" }, "Refresh")),
    message ? el("div", { class: "hh-sub", "data-message": "" }, message) : null,
    spendBlock(), setupBlock(),
    list.length ? el("ul", {}, list.map(jobRow)) : el("div", { class: "hh-sub" }, "No HappyHorse jobs yet.")));
  const running = list.some((j) => ACTIVE.has(j.state));
  if (running && !clock) {
    clock = setInterval(() => {
      for (const job of jobs.values()) {
        const line = root?.querySelector(`[data-clock="${job.id}"]`);
        if (line) line.textContent = clockText(job);
      }
    }, 1000);
  } else if (!running && clock) {
    clearInterval(clock);
    clock = null;
  }
}

api.addEventListener(EVENT, (event) => {
  const job = event.detail?.job;
  if (!job?.id) return;
  jobs.set(job.id, { ...job, receivedAt: Date.now() });
  render();
  // A job that ended changes the spend: read it once.
  if (!ACTIVE.has(job.state) && root) {
    getJSON("/happyhorse/status").then((st) => { status = st; render(); }).catch(() => {});
  }
});

app.registerExtension({
  name: "happyhorse.panel",
  setup() {
    const manager = app.extensionManager;
    if (typeof manager?.registerSidebarTab !== "function") return;
    manager.registerSidebarTab({
      id: "happyhorse",
      icon: "pi pi-video",
      title: "HappyHorse",
      tooltip: "HappyHorse jobs, spend and set-up",
      type: "custom",
      render(element) {
        root = element;
        load();
      },
      destroy() {
        root = null;
        if (clock) clearInterval(clock);
        clock = null;
      },
    });
  },
});
