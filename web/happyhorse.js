// HappyHorse price pill: shows the estimated price on each HappyHorse node as its settings change.
// The number comes from the server (POST /happyhorse/price), i.e. the same tables the runner bills with.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const PREFIX = "HappyHorsePack.";
const PRICED = ["Text2Video", "Image2Video", "Reference2Video", "VideoEdit", "CostEstimate"].map((n) => PREFIX + n);
const CHECK_MS = 700;

// Duck-typed badge (LiteGraph draws any object with height / getWidth / draw returned by a badge function).
class PricePill {
  constructor() {
    this.text = "";
    this.title = "";
    this.height = 20;
    this.padding = 6;
    this.fontSize = 12;
  }

  getWidth(ctx) {
    if (!this.text) return 0;
    const font = ctx.font;
    ctx.font = `${this.fontSize}px sans-serif`;
    const width = ctx.measureText(this.text).width + this.padding * 2;
    ctx.font = font;
    return width;
  }

  draw(ctx, x, y) {
    if (!this.text) return;
    const { font, fillStyle, textBaseline } = ctx;
    const width = this.getWidth(ctx);
    ctx.fillStyle = this.text === "free" ? "#1f5130" : "#4a3a12";
    ctx.beginPath();
    if (ctx.roundRect) ctx.roundRect(x, y, width, this.height, 5);
    else ctx.rect(x, y, width, this.height);
    ctx.fill();
    ctx.font = `${this.fontSize}px sans-serif`;
    ctx.fillStyle = "#fff";
    ctx.textBaseline = "middle";
    ctx.fillText(this.text, x + this.padding, y + this.height / 2 + 1);
    ctx.font = font;
    ctx.fillStyle = fillStyle;
    ctx.textBaseline = textBaseline;
  }
}

function pricedWidgets(node) {
  const values = {};
  for (const w of node.widgets ?? []) {
    if (w.name === "provider" || w.name === "mode" || w.name.startsWith("provider.") || w.name.startsWith("mode.")) {
      values[w.name] = w.value;
    }
  }
  return values;
}

async function refresh(node, pill, widgets) {
  try {
    const res = await api.fetchApi("/happyhorse/price", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ node_type: node.comfyClass, widgets }),
    });
    const body = await res.json();
    pill.text = res.ok ? body.label : "";
    pill.title = res.ok ? body.breakdown.join("\n") : body.error ?? "";
  } catch {
    pill.text = "";
  }
  node.setDirtyCanvas?.(true, false);
}

app.registerExtension({
  name: "happyhorse.pricePill",
  nodeCreated(node) {
    if (!PRICED.includes(node.comfyClass)) return;
    const pill = new PricePill();
    node.badges = node.badges ?? [];
    node.badges.push(() => pill);
    let last = "";
    const timer = setInterval(() => {
      const widgets = pricedWidgets(node);
      const signature = JSON.stringify(widgets);
      if (signature === last) return;
      last = signature;
      refresh(node, pill, widgets);
    }, CHECK_MS);
    const onRemoved = node.onRemoved;
    node.onRemoved = function () {
      clearInterval(timer);
      return onRemoved?.apply(this, arguments);
    };
  },
});
