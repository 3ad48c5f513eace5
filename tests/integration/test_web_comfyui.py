"""web/happyhorse.js in ComfyUI's real frontend, served by the real ComfyUI with the pack, in headless Chromium.

Every example workflow is loaded into the live page the way a user's file is (app.loadGraphData); the test then
reads the page: our nodes and their widgets, the price pill LiteGraph paints, what the page would save. The
ComfyUI process has a canary DASHSCOPE_API_KEY (conftest), which must appear nowhere in the page.
"""
from __future__ import annotations

import json
import re
import sys
import time
import urllib.error
import urllib.parse
from pathlib import Path

import pytest
from happyhorse.comfy.estimates import price_for_widgets
from PIL import Image

from ..web.cdp import Browser, find_chromium
from .conftest import CANARY_KEY
from .server import REPO

pytestmark = pytest.mark.integration

WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
SCREENSHOT = Path("/tmp/happyhorse_ui.png")
BOOT_TIMEOUT_S = 180
# What a pasted key looks like for any of the hosts (sk-..., long opaque tokens), besides the canary itself.
KEY_LIKE = re.compile(r"sk-[A-Za-z0-9_-]{8,}|\b[A-Za-z0-9_-]{32,}\b")
KEY_NAMES = re.compile(r"key|token|secret|password|auth", re.IGNORECASE)
FREE_RGB = (0x1F, 0x51, 0x30)   # the "free" pill's fill in web/happyhorse.js

# Records every string the page paints on a canvas, so a test can tell "the pill holds the text" from "the
# pill was drawn". Installed once; it passes every call through unchanged.
PAINT_PROBE = """(() => {
  if (window.__hhPainted) return true;
  window.__hhPainted = new Set();
  const fillText = CanvasRenderingContext2D.prototype.fillText;
  CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
    window.__hhPainted.add(String(text));
    return fillText.call(this, text, ...rest);
  };
  return true;
})()"""


def pricing_widgets(named: dict) -> dict:
    return {k: v for k, v in named.items() if k.split(".")[0] in ("provider", "mode")}


def priced(node: dict) -> bool:
    return node["type"].startswith("HappyHorsePack.") and node["type"] != "HappyHorsePack.CollectJob"


@pytest.fixture(scope="module")
def ui(comfy, tmp_path_factory):
    binary = find_chromium()
    if binary is None:
        reason = "no Chromium on PATH (chromium, chromium-browser or google-chrome): the browser tests need one"
        sys.stderr.write(f"\n[integration] skipped: {reason}\n")
        pytest.skip(reason)
    # A returning user: a first start would open the template browser over the canvas, on a blank graph.
    status, _ = comfy.post_json("/settings/Comfy.TutorialCompleted", True)
    assert status == 200
    browser = Browser(binary, tmp_path_factory.mktemp("chromium")).start()   # cleans up after itself if it fails
    try:
        t0 = time.monotonic()
        browser.goto(comfy.url + "/")
        # Ready once the start-up workflow is on the canvas: loading ours earlier would be overwritten by it.
        # (isGraphReady, not app.graph: reading app.graph too early logs an error in the page.)
        browser.wait_for("window.app && app.isGraphReady && app.graph.nodes.length > 0", timeout=BOOT_TIMEOUT_S,
                         what="ComfyUI's frontend to boot")
        sys.stderr.write(f"\n[web] ComfyUI frontend ready in {time.monotonic() - t0:.1f} s\n")
        browser.evaluate(PAINT_PROBE)
        yield browser
    finally:
        browser.close()


def load(ui: Browser, workflow: Path) -> dict:
    data = json.loads(workflow.read_text())
    ui.evaluate("window.__hhPainted.clear()")
    ui.evaluate(f"app.loadGraphData({json.dumps(data)}).then(() => true)")
    ui.wait_for(f"app.graph.nodes.length === {len(data['nodes'])}", what=f"{workflow.name} on the canvas")
    return data


def live_node(ui: Browser, node_id: int) -> dict:
    return ui.evaluate(f"""(() => {{
      const n = app.graph.getNodeById({node_id});
      return {{ type: n.comfyClass, widgets: Object.fromEntries((n.widgets ?? []).map(w => [w.name, w.value])) }};
    }})()""")


def wait_for_pill(ui: Browser, node_id: int, label: str) -> None:
    """LiteGraph has painted the label (on its own: the test forces no redraw) and it is this node's pill.
    The node's badges are only read once the label is painted, so the test never sets off the price request."""
    ui.wait_for(f"""window.__hhPainted.has({json.dumps(label)}) && app.graph.getNodeById({node_id}).badges
      .map(b => typeof b === "function" ? b() : b).some(b => b.text === {json.dumps(label)})""",
                timeout=15, what=f"node {node_id}'s pill to show {label!r}")


def set_widgets(ui: Browser, node_id: int, values: dict) -> None:
    """As a user's pick does: set the value and run the widget's callback (a provider or version change rebuilds
    the nested widgets), in order."""
    ui.evaluate(f"""(() => {{
      const n = app.graph.getNodeById({node_id});
      for (const [name, value] of Object.entries({json.dumps(values)})) {{
        const w = n.widgets.find(w => w.name === name);
        w.value = value;
        w.callback?.(w.value, app.canvas, n);
      }}
      app.canvas.setDirty(true, true);
      return true;
    }})()""")


def saved_workflow(comfy, path: str, timeout: float = 10.0) -> dict:
    """The file the frontend saved, read back from ComfyUI's user data once it is there (asked from here, not
    from the page, so the 404s before it exists stay out of the page's console)."""
    url = "/api/userdata/" + urllib.parse.quote(path, safe="")
    deadline = time.monotonic() + timeout
    while True:
        try:
            return comfy.get_json(url)
        except urllib.error.HTTPError as exc:
            if exc.code != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def test_extension_is_served_and_registered(ui, comfy):
    assert "happyhorse.pricePill" in ui.evaluate("app.extensions.map(e => e.name)")
    loaded = ui.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert f"{comfy.url}/extensions/comfyui-happyhorse/happyhorse.js" in loaded


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_nodes_widgets_and_pill(ui, workflow):
    data = load(ui, workflow)
    ours = [n for n in data["nodes"] if n["type"].startswith("HappyHorsePack.")]
    assert ours, f"{workflow.name} has no HappyHorse node"
    for node in ours:
        live = live_node(ui, node["id"])
        assert live["type"] == node["type"]
        # Every widget the workflow sets exists on the live node with that value (the node's schema, as the
        # frontend built it from /object_info, matches what the workflow was written against).
        assert live["widgets"] == node["widgets_values_named"]
        for name, value in live["widgets"].items():
            assert not KEY_NAMES.search(name), f"{node['type']} has a widget named {name!r}"
            assert not (isinstance(value, str) and KEY_LIKE.search(value)), f"{name}={value!r} looks like a key"
        if priced(node):
            label = price_for_widgets(node["type"], pricing_widgets(node["widgets_values_named"]))["label"]
            wait_for_pill(ui, node["id"], label)
    if workflow.stem == "happyhorse_cost_estimate":
        wait_for_pill(ui, 1, "~1.80 USD")     # DashScope 1.1, 1080p, 10 s, as docs/nodes.md says
    if workflow.stem == "happyhorse_text_to_video":
        wait_for_pill(ui, 1, "free")
        ui.screenshot(SCREENSHOT)
        with Image.open(SCREENSHOT) as shot:
            green = sum(n for n, rgb in shot.convert("RGB").getcolors(1 << 24) if rgb == FREE_RGB)
        assert green >= 100, f"only {green} px of the pill's green in {SCREENSHOT}: is it hidden?"


def test_pill_follows_a_provider_change_and_no_secret_reaches_the_page(ui, comfy):
    load(ui, REPO / "workflows" / "happyhorse_text_to_video.json")
    wait_for_pill(ui, 1, "free")
    # DashScope is the provider whose key ComfyUI holds (the canary): now the key is in play.
    set_widgets(ui, 1, {"provider": "dashscope", "provider.version": "1.0", "provider.version.resolution": "1080p",
                        "provider.version.duration": 10})
    wait_for_pill(ui, 1, "~2.40 USD")
    ui.screenshot(SCREENSHOT.with_name("happyhorse_ui_dashscope.png"))

    # What the frontend itself saves: the workflow file (through its Save command and filename prompt, as a user
    # saves), the draft it keeps in localStorage, and the prompt + workflow it queues (that workflow is what
    # ComfyUI embeds in PNG/MP4 files).
    name = "web_secret_check"
    ui.evaluate("app.extensionManager.command.execute('Comfy.SaveWorkflow'); true")   # resolves after the prompt
    ui.wait_for("!!document.querySelector('[role=dialog] .prompt-dialog-content input')", what="the filename prompt")
    ui.evaluate(f"""(() => {{
      const dialog = document.querySelector("[role=dialog]");
      const input = dialog.querySelector(".prompt-dialog-content input");
      input.value = {json.dumps(name)};
      input.dispatchEvent(new Event("input", {{ bubbles: true }}));
      [...dialog.querySelectorAll("button")].find(b => b.textContent.trim() === "Confirm").click();
      return true;
    }})()""")
    saved = saved_workflow(comfy, f"workflows/{name}.json")
    saved_t2v = next(n for n in saved["nodes"] if n["type"] == "HappyHorsePack.Text2Video")
    assert saved_t2v["widgets_values_named"]["provider"] == "dashscope", "the saved file is the current graph"

    places = {
        "saved workflow file": json.dumps(saved),
        "app.graph.serialize()": ui.evaluate("JSON.stringify(app.graph.serialize())"),
        "app.graphToPrompt()": ui.evaluate("app.graphToPrompt().then(p => JSON.stringify(p))"),
        "localStorage": ui.evaluate("JSON.stringify(Object.entries(localStorage))"),
        "sessionStorage": ui.evaluate("JSON.stringify(Object.entries(sessionStorage))"),
        "the page's DOM": ui.evaluate("document.documentElement.outerHTML"),
    }
    # The queued prompt holds the current graph. localStorage is searched too, but whether the frontend's draft
    # there already holds this edit depends on when its change tracker last ran (earlier tests' clicks): not
    # asserted, so the test does not depend on the order it runs in.
    assert "dashscope" in places["app.graphToPrompt()"]
    for where, text in places.items():
        assert CANARY_KEY not in text and "sk-hhcanary" not in text, f"the key is in {where}"
    values = ui.evaluate("app.graph.nodes.flatMap(n => (n.widgets ?? []).map(w => [n.comfyClass, w.name, w.value]))")
    for node_type, name, value in values:
        if str(node_type).startswith("HappyHorsePack."):
            assert not KEY_NAMES.search(name), f"{node_type} has a widget named {name!r}"
            assert not (isinstance(value, str) and KEY_LIKE.search(value)), f"{name}={value!r} looks like a key"


def test_console_has_no_errors_from_the_extension(ui):
    # Last in this module, so it covers every workflow loaded above. The frontend's own complaints in this
    # offline sandbox (no user.css, no api.comfy.org) are shown, not judged.
    ours = [e for e in ui.console if e.level in ("error", "warning") and e.mentions("happyhorse")]
    others = [e for e in ui.errors() if e not in ours]
    if others:
        sys.stderr.write(f"\n[web] {len(others)} console errors from ComfyUI itself, e.g. {others[0].text[:160]}\n")
    assert not ours, f"console errors or warnings from the extension: {ours}"
