// HappyHorse price pill: shows the estimated price on each HappyHorse node as its settings change.
// The text comes from the server (POST /happyhorse/price), i.e. the same tables the runner bills with.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const PREFIX = "HappyHorsePack.";
const PRICED = ["Text2Video", "Image2Video", "Reference2Video", "VideoEdit", "CostEstimate"].map((n) => PREFIX + n);
// An error message can be long; past this width (or the node's, if wider) it is cut with an ellipsis instead of
// running over the nodes beside it.
const MAX_WIDTH = 320;
const COLORS = { free: "#1f5130", price: "#4a3a12", error: "#6b1f1f" };

function pricedWidgets(node) {
  const values = {};
  for (const w of node.widgets ?? []) {
    if (w.name === "provider" || w.name === "mode" || w.name.startsWith("provider.") || w.name.startsWith("mode.")) {
      values[w.name] = w.value;
    }
  }
  return values;
}

// The first clause of the server's message ("Version '2.0' is not offered by dashscope for this node; pick one
// of ...") says what is wrong; the rest, which says what to pick, does not fit on a pill.
function shortError(message) {
  const text = String(message ?? "").split(/; |\. /)[0].trim();
  return `no price: ${text || "the server gave no reason"}`;
}

// Duck-typed badge: LiteGraph draws anything with height / getWidth(ctx) / draw(ctx, x, y) that a node's badge
// function returns. LiteGraph calls that function each time it draws the node, so the pill re-asks the server
// exactly when a drawn node's settings changed: no timers, and nothing is asked for nodes nobody sees.
class PricePill {
  constructor(node) {
    this.node = node;
    this.text = "";
    this.kind = "price";
    this.asked = null;
    this.fit = null;
    this.height = 20;
    this.padding = 6;
    this.fontSize = 12;
  }

  current() {
    const widgets = pricedWidgets(this.node);
    const signature = JSON.stringify(widgets);
    if (signature !== this.asked) {
      this.asked = signature;
      this.refresh(widgets, signature);
    }
    return this;
  }

  async refresh(widgets, signature) {
    let text;
    let kind;
    try {
      const res = await api.fetchApi("/happyhorse/price", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ node_type: this.node.comfyClass, widgets }),
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
    if (signature !== this.asked) return;
    this.text = text;
    this.kind = kind;
    this.node.setDirtyCanvas?.(true, false);
  }

  // The text as drawn (cut to fit) and its width, measured once per text and room (not every frame).
  // Sets ctx.font; callers restore it.
  fitted(ctx) {
    ctx.font = `${this.fontSize}px sans-serif`;
    const room = Math.max(MAX_WIDTH, this.node.size?.[0] ?? 0) - this.padding * 2;
    if (this.fit?.source !== this.text || this.fit.room !== room) {
      let text = this.text;
      while (text.length > 1 && ctx.measureText(text).width > room) text = text.slice(0, -2) + "…";
      const width = Math.ceil(ctx.measureText(text).width) + this.padding * 2;
      this.fit = { source: this.text, room, text, width };
    }
    return this.fit;
  }

  getWidth(ctx) {
    if (!this.text) return 0;
    const font = ctx.font;
    const { width } = this.fitted(ctx);
    ctx.font = font;
    return width;
  }

  draw(ctx, x, y) {
    if (!this.text) return;
    const { font, fillStyle, textBaseline } = ctx;
    const { text, width } = this.fitted(ctx);
    ctx.fillStyle = COLORS[this.kind];
    ctx.beginPath();
    if (ctx.roundRect) ctx.roundRect(x, y, width, this.height, 5);
    else ctx.rect(x, y, width, this.height);
    ctx.fill();
    ctx.fillStyle = "#fff";
    ctx.textBaseline = "middle";
    ctx.fillText(text, x + this.padding, y + this.height / 2 + 1);
    ctx.font = font;
    ctx.fillStyle = fillStyle;
    ctx.textBaseline = textBaseline;
  }
}

app.registerExtension({
  name: "happyhorse.pricePill",
  nodeCreated(node) {
    if (!PRICED.includes(node.comfyClass)) return;
    const pill = new PricePill(node);
    node.badges = node.badges ?? [];
    node.badges.push(() => pill.current());
  },
});
