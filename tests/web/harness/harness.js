// The host side of the harness: a minimal LiteGraph-like node and canvas, exposed to the test as window.harness.
// Only what web/happyhorse.js touches exists: node.comfyClass, node.widgets ({name, value}), node.size,
// node.badges (badge objects or functions returning one) and node.setDirtyCanvas(). Like LiteGraph, the canvas
// redraws on animation frames when something marked it dirty, and draws each node's badges in a row above the
// title: a badge function is called on every draw, then getWidth(ctx) and draw(ctx, x, y) on what it returns.
import { app } from "./scripts/app.js";
import { api } from "./scripts/api.js";

const TITLE_HEIGHT = 30;
const BADGE_GAP = 2;

class Canvas {
  constructor(element) {
    this.ctx = element.getContext("2d");
    this.nodes = [];
    this.dirty = true;
    this.ticks = 0;
    this.drawn = new Map();   // node id -> [{text, width}] of the badges painted in the last drawing of that node
    const loop = () => {
      this.ticks += 1;
      if (this.dirty) {
        this.dirty = false;
        this.draw();
      }
      requestAnimationFrame(loop);
    };
    requestAnimationFrame(loop);
  }

  draw() {
    const { ctx } = this;
    ctx.fillStyle = "#202020";
    ctx.fillRect(0, 0, ctx.canvas.width, ctx.canvas.height);
    for (const node of this.nodes) {
      ctx.save();
      ctx.translate(node.pos[0], node.pos[1] + TITLE_HEIGHT);
      ctx.fillStyle = "#353535";
      ctx.fillRect(0, -TITLE_HEIGHT, node.size[0], node.size[1] + TITLE_HEIGHT);
      ctx.fillStyle = "#ccc";
      ctx.font = "14px sans-serif";
      ctx.fillText(node.comfyClass, 10, -10);
      this.drawBadges(node);
      ctx.restore();
    }
  }

  drawBadges(node) {
    const { ctx } = this;
    const badges = node.badges.map((b) => (typeof b === "function" ? b() : b));
    const painted = [];
    const fillText = ctx.fillText;
    let x = 0;
    for (const badge of badges) {
      const width = badge.getWidth(ctx);
      // Record what the badge really paints, so the test reads the canvas's words, not the badge's fields.
      ctx.fillText = (text, ...rest) => {
        painted.push({ text, width });
        fillText.call(ctx, text, ...rest);
      };
      badge.draw(ctx, x, -(TITLE_HEIGHT + BADGE_GAP) - badge.height);
      ctx.fillText = fillText;
      x += width + BADGE_GAP;
    }
    this.drawn.set(node.id, painted);
  }
}

class GraphNode {
  constructor(canvas, id, comfyClass, widgets) {
    this.canvas = canvas;
    this.id = id;
    this.comfyClass = comfyClass;
    this.widgets = Object.entries(widgets).map(([name, value]) => ({ name, value }));
    this.pos = [40, 60 + 90 * (id - 1)];
    this.size = [420, 40];
    this.badges = [];
  }

  setDirtyCanvas(foreground) {
    if (foreground) this.canvas.dirty = true;
  }
}

const canvas = new Canvas(document.getElementById("canvas"));

window.harness = {
  app,
  api,
  canvas,

  reset() {
    canvas.nodes = [];
    canvas.drawn.clear();
    canvas.dirty = true;
    api.requests = [];
    api.hold = null;
  },

  // As ComfyUI does: construct the node, then let every extension see it; the node then joins the graph.
  createNode(comfyClass, widgets) {
    const node = new GraphNode(canvas, canvas.nodes.length + 1, comfyClass, widgets);
    for (const extension of app.extensions) extension.nodeCreated?.(node);
    canvas.nodes.push(node);
    canvas.dirty = true;
    return node.id;
  },

  // As a user's edit does in LiteGraph: the widget's value changes and the canvas is redrawn.
  setWidget(nodeId, name, value) {
    const widget = canvas.nodes.find((n) => n.id === nodeId).widgets.find((w) => w.name === name);
    widget.value = value;
    canvas.dirty = true;
  },

  // The badge texts painted for the node the last time it was drawn.
  drawn(nodeId) {
    return (canvas.drawn.get(nodeId) ?? []).map((b) => b.text);
  },

  drawnWidths(nodeId) {
    return (canvas.drawn.get(nodeId) ?? []).map((b) => b.width);
  },

  // Holds back the price requests whose widgets match; returns nothing, call release() to let them go.
  holdWhere(match) {
    let release;
    const gate = new Promise((resolve) => (release = resolve));
    api.hold = (body) => (match(body.widgets) ? gate : null);
    this.release = release;
  },

  afterTicks(count) {
    const until = canvas.ticks + count;
    return new Promise((resolve) => {
      const check = () => (canvas.ticks >= until ? resolve(true) : requestAnimationFrame(check));
      check();
    });
  },
};
