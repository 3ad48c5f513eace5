// HappyHorse price pill: shows the estimated price on each HappyHorse node as its settings change, in the classic
// canvas and in the Vue node renderer ("Nodes 2.0"). The text comes from the server (POST /happyhorse/price), i.e.
// the same tables the runner bills with. Also the pack's settings: the pill on/off and the default provider.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const PREFIX = "HappyHorsePack.";
const PRICED = ["Text2Video", "Image2Video", "Reference2Video", "VideoEdit", "CostEstimate"].map((n) => PREFIX + n);
// An error message can be long; past this width (or the node's, if wider) it is cut with an ellipsis instead of
// running over the nodes beside it.
const MAX_WIDTH = 320;
const COLORS = { free: "#1f5130", price: "#4a3a12", error: "#6b1f1f" };
const SETTING_PILL = "HappyHorse.PricePill";
const SETTING_PROVIDER = "HappyHorse.DefaultProvider";
// Nodes whose "provider" widget takes the default provider when a user adds them (not when a workflow loads).
const PROVIDER_DEFAULTED = [
  "Text2Video", "Image2Video", "Reference2Video", "VideoEdit", "CostEstimate", "CollectJob",
].map((n) => PREFIX + n);
const isPricing = (name) => name === "provider" || name === "mode" || name.startsWith("provider.") || name.startsWith("mode.");
const pills = new Set();
let providers = [];   // the provider names, for the setting's choices (from GET /happyhorse/status)

// A setting's value, or the fallback on a frontend without settings.
function setting(id, fallback) {
  try {
    return app.extensionManager?.setting?.get?.(id) ?? fallback;
  } catch {
    return fallback;
  }
}

function pricedWidgets(node) {
  const values = {};
  for (const w of node.widgets ?? []) {
    if (isPricing(w.name)) values[w.name] = w.value;
  }
  return values;
}

// The first clause of the server's message ("Version '2.0' is not offered by dashscope for this node; pick one
// of ...") says what is wrong; the rest, which says what to pick, does not fit on a pill.
function shortError(message) {
  const text = String(message ?? "").split(/; |\. /)[0].trim();
  return `no price: ${text || "the server gave no reason"}`;
}

// The badge both renderers draw. The classic canvas (LiteGraph) calls the node's badge function each time it
// draws the node and then getWidth(ctx) / draw(ctx, x, y) on what it returns. The Vue renderer ("Nodes 2.0")
// calls the function when it builds the node and shows `text` in `fgColor` on `bgColor`; it hands every own
// enumerable property to its badge element, so everything else lives in private fields.
//
// The Vue renderer only builds a node's badges again when something reactive it read has changed, and a node's
// badge list is not reactive once the node is shown. So `text` is a getter that also reads a revision counter on
// the pack's own sidebar tab object (the frontend keeps registered tabs in a reactive store): bumping it when a
// price arrives makes the renderer read the new text. Without sidebar tabs there is nothing to bump and the
// classic canvas, which draws every frame, is unaffected.
const SIDEBAR_TAB = "happyhorse";

function reactiveTab() {
  try {
    return app.extensionManager?.getSidebarTabs?.()?.find((t) => t.id === SIDEBAR_TAB) ?? null;
  } catch {
    return null;
  }
}

class PricePill {
  #node;
  #label = "";
  #shown = "";
  #kind = "price";
  #asked = null;
  #fit = null;
  #watched = new WeakSet();

  constructor(node) {
    this.#node = node;
    Object.defineProperty(this, "text", {
      enumerable: true,
      get: () => {
        void reactiveTab()?.hhPriceRevision;     // a dependency for the Vue renderer; see above
        return this.#shown;
      },
    });
    this.fgColor = "#fff";
    this.bgColor = COLORS.price;
  }

  get height() {
    return 20;
  }

  get padding() {
    return 6;
  }

  get fontSize() {
    return 12;
  }

  current() {
    this.#watchWidgets();
    const widgets = pricedWidgets(this.#node);
    const signature = JSON.stringify(widgets);
    if (signature !== this.#asked) {
      this.#asked = signature;
      this.#refresh(widgets, signature);
    }
    this.#show();
    return this;
  }

  // The Vue renderer does not call the badge function on each frame: a pricing widget's change (its callback,
  // which both renderers call) asks again. Widgets a provider change creates are watched from then on.
  #watchWidgets() {
    const pill = this;
    for (const w of this.#node.widgets ?? []) {
      if (this.#watched.has(w) || !isPricing(w.name ?? "")) continue;
      this.#watched.add(w);
      const callback = w.callback;
      w.callback = function (...args) {
        const result = callback?.apply(this, args);
        queueMicrotask(() => pill.current());
        return result;
      };
    }
  }

  async #refresh(widgets, signature) {
    let text;
    let kind;
    try {
      const res = await api.fetchApi("/happyhorse/price", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ node_type: this.#node.comfyClass, widgets }),
      });
      const body = await res.json();
      if (res.ok) {
        [text, kind] = [body.label, body.usd === 0 ? "free" : "price"];
      } else {
        [text, kind] = [shortError(body.error), "error"];
      }
    } catch {
      // No answer, or one that is not JSON (a server without the route, a proxy's error page).
      [text, kind] = ["no price: no answer from the server", "error"];
    }
    // Answers can arrive out of order; only the one for the settings asked last may be shown.
    if (signature !== this.#asked) return;
    this.#label = text;
    this.#kind = kind;
    this.#show();
  }

  // Puts the current label on the badge (or nothing when the setting hides the pill) and, if that changed what
  // shows, has both renderers draw it again.
  #show() {
    const text = setting(SETTING_PILL, true) ? this.#label : "";
    const bgColor = COLORS[this.#kind];
    if (text === this.#shown && bgColor === this.bgColor) return;
    this.#shown = text;
    this.bgColor = bgColor;
    this.#node.setDirtyCanvas?.(true, false);
    const tab = reactiveTab();
    if (tab) tab.hhPriceRevision = (tab.hhPriceRevision ?? 0) + 1;
  }

  refresh() {
    this.#show();
  }

  // The text as drawn (cut to fit) and its width, measured once per text and room (not every frame).
  // Sets ctx.font; callers restore it.
  #fitted(ctx) {
    ctx.font = `${this.fontSize}px sans-serif`;
    const room = Math.max(MAX_WIDTH, this.#node.size?.[0] ?? 0) - this.padding * 2;
    if (this.#fit?.source !== this.#shown || this.#fit.room !== room) {
      let text = this.#shown;
      while (text.length > 1 && ctx.measureText(text).width > room) text = text.slice(0, -2) + "…";
      const width = Math.ceil(ctx.measureText(text).width) + this.padding * 2;
      this.#fit = { source: this.#shown, room, text, width };
    }
    return this.#fit;
  }

  getWidth(ctx) {
    if (!this.#shown) return 0;
    const font = ctx.font;
    const { width } = this.#fitted(ctx);
    ctx.font = font;
    return width;
  }

  draw(ctx, x, y) {
    if (!this.#shown) return;
    const { font, fillStyle, textBaseline } = ctx;
    const { text, width } = this.#fitted(ctx);
    ctx.fillStyle = this.bgColor;
    ctx.beginPath();
    if (ctx.roundRect) ctx.roundRect(x, y, width, this.height, 5);
    else ctx.rect(x, y, width, this.height);
    ctx.fill();
    ctx.fillStyle = this.fgColor;
    ctx.textBaseline = "middle";
    ctx.fillText(text, x + this.padding, y + this.height / 2 + 1);
    ctx.font = font;
    ctx.fillStyle = fillStyle;
    ctx.textBaseline = textBaseline;
  }
}

// A node a user adds starts on their default provider. Set as the node is made: a workflow being loaded or
// pasted sets its own values right after, so those always win.
function applyDefaultProvider(node) {
  const wanted = setting(SETTING_PROVIDER, "simulator");
  // Cost Estimate nests the provider under its mode ("mode.provider").
  const widget = node.widgets?.find((w) => w.name === "provider" || w.name === "mode.provider");
  if (!widget || widget.value === wanted || !(widget.options?.values ?? []).includes(wanted)) return;
  widget.value = wanted;
  widget.callback?.(wanted, app.canvas, node);
}

app.registerExtension({
  name: "happyhorse.pricePill",
  settings: [
    {
      id: SETTING_PILL,
      category: ["HappyHorse", "Price", "Pill"],
      name: "Show the estimated price on HappyHorse nodes",
      type: "boolean",
      defaultValue: true,
      onChange: () => pills.forEach((pill) => pill.refresh()),
    },
    {
      id: SETTING_PROVIDER,
      category: ["HappyHorse", "Nodes", "Default provider"],
      name: "Provider for new HappyHorse nodes (keys stay in environment variables or the config file)",
      type: "combo",
      options: () => (providers.length ? providers : ["simulator"]),
      defaultValue: "simulator",
    },
  ],
  async setup() {
    try {
      const res = await api.fetchApi("/happyhorse/status");
      if (res.ok) providers = (await res.json()).setup.providers.map((p) => p.name);
    } catch {
      // An older server without the route: the setting offers the simulator only.
    }
  },
  nodeCreated(node) {
    if (PROVIDER_DEFAULTED.includes(node.comfyClass)) applyDefaultProvider(node);
    if (!PRICED.includes(node.comfyClass)) return;
    const pill = new PricePill(node);
    pills.add(pill);
    node.badges = node.badges ?? [];
    node.badges.push(() => pill.current());
    const onRemoved = node.onRemoved;
    node.onRemoved = function (...args) {
      pills.delete(pill);
      return onRemoved?.apply(this, args);
    };
  },
});
