"""The HappyHorse sidebar panel (web/panel.js) in ComfyUI's real frontend, real ComfyUI with the pack, headless
Chromium: it lists a job run on the simulator, follows it live over ComfyUI's websocket (no reload, no polling),
and its "Add Collect Job node" puts a node in the graph that collects that job when run.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from happyhorse.comfy.estimates import price_for_widgets

from ..web.cdp import Browser, find_chromium
from .conftest import CANARY_KEY, ledger_rows, t2v_prompt
from .server import REPO, run_prompt

pytestmark = pytest.mark.integration

SCREENSHOTS = Path("/tmp")
BOOT_TIMEOUT_S = 180

# Records every state each job row shows, as the DOM changes: proof of live updates without asking the page.
STATE_PROBE = """(() => {
  window.__hhStates = {};
  window.__hhBoot = performance.timeOrigin;
  new MutationObserver(() => {
    for (const row of document.querySelectorAll('[data-job]')) {
      const seen = (window.__hhStates[row.dataset.job] ??= []);
      if (seen[seen.length - 1] !== row.dataset.state) seen.push(row.dataset.state);
    }
  }).observe(document.body, { subtree: true, childList: true, attributes: true });
  return true;
})()"""


@pytest.fixture(scope="module")
def page(comfy, tmp_path_factory):
    binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium on PATH: the browser tests need one")
    status, _ = comfy.post_json("/settings/Comfy.TutorialCompleted", True)
    assert status == 200
    browser = Browser(binary, tmp_path_factory.mktemp("chromium-panel")).start()
    try:
        browser.goto(comfy.url + "/")
        browser.wait_for("window.app && app.isGraphReady && app.graph.nodes.length > 0", timeout=BOOT_TIMEOUT_S,
                         what="ComfyUI's frontend to boot")
        yield browser
    finally:
        browser.close()


def open_panel(page: Browser) -> None:
    page.wait_for("app.extensionManager.getSidebarTabs().some(t => t.id === 'happyhorse')",
                  what="the HappyHorse sidebar tab to be registered")
    if not page.evaluate("!!document.querySelector('.hh-panel')"):
        page.evaluate("app.extensionManager.command.execute('Workspace.ToggleSidebarTab.happyhorse').then(() => true)")
    page.wait_for("!!document.querySelector('.hh-panel')", what="the panel to render")


def test_panel_follows_a_simulator_job_live_and_brings_it_back_as_a_collect_node(page, comfy):
    open_panel(page)
    page.evaluate(STATE_PROBE)
    boot = page.evaluate("window.__hhBoot")
    prompt = f"a horse seen by the panel {time.time()}"
    result = asyncio.run(run_prompt(comfy, t2v_prompt(prompt, 7, duration=3)))
    assert result.status == "success", result.error_message()
    task_id = next(t for _, _, t in result.texts if "Task: " in t).split("Task: ")[1].split()[0]

    row = page.wait_for(f"""(() => {{
      const row = [...document.querySelectorAll('[data-job]')].find(r => r.textContent.includes({json.dumps(prompt)}));
      return row && row.dataset.state === 'done' && row.dataset.job;
    }})()""", timeout=20, what="the job's row to say done")
    seen = page.evaluate(f"window.__hhStates[{json.dumps(row)}]")
    assert seen[-1] == "done" and any(s in ("queued", "running", "downloading") for s in seen), seen
    assert page.evaluate("window.__hhBoot") == boot, "the page was reloaded"
    text = page.evaluate(f"document.querySelector('[data-job=\"{row}\"]').textContent")
    assert "Simulator" in text and "t2v" in text and "720p" in text and "free" in text
    assert page.evaluate(f"!!document.querySelector('[data-job=\"{row}\"] video')"), "no preview of the video"
    page.screenshot(SCREENSHOTS / "happyhorse_panel.png")

    # The preview's source is the pack's video route, and it serves the MP4 the ledger names.
    size = page.evaluate(f"""fetch(document.querySelector('[data-job="{row}"] video').src)
      .then(r => r.ok && r.headers.get('content-type') === 'video/mp4' ? r.arrayBuffer() : null)
      .then(b => b && b.byteLength)""")
    assert size and size > 1000

    page.evaluate(f"document.querySelector('[data-job=\"{row}\"] [data-action=collect]').click(); true")
    node = page.wait_for("""(() => {
      const n = app.graph.nodes.find(n => n.comfyClass === 'HappyHorsePack.CollectJob');
      return n && Object.fromEntries(n.widgets.map(w => [w.name, w.value]).concat([['id', n.id]]));
    })()""", what="a Collect Job node in the graph")
    assert node["provider"] == "simulator" and node["task_id"] == task_id
    page.screenshot(SCREENSHOTS / "happyhorse_panel_collect.png")

    # The node as the page would queue it collects the job: same task, nothing submitted again.
    api_prompt = page.evaluate("app.graphToPrompt().then(p => p.output)")
    collect = api_prompt[str(node["id"])]
    runs = asyncio.run(run_prompt(comfy, {
        "1": collect,
        "2": {"class_type": "SaveVideo", "inputs": {"video": ["1", 0], "filename_prefix": "video/hh_collect",
                                                    "format": "mp4", "format.codec": "h264"}}}))
    assert runs.status == "success", runs.error_message()
    assert any(f"Task: {task_id}" in t for _, _, t in runs.texts)


def test_panel_shows_keys_as_yes_or_no_only(page):
    open_panel(page)
    page.wait_for("!!document.querySelector('.hh-setup')", what="the set-up block")
    text = page.evaluate("document.querySelector('.hh-setup').textContent")
    assert "DashScope: key set" in text and "reAPI: no key" in text
    html = page.evaluate("document.documentElement.outerHTML")
    assert CANARY_KEY not in html and "sk-hhcanary" not in html


async def test_cancel_from_the_panel_stops_the_node_and_cancels_at_the_host(page, comfy, inner_sim_url):
    from .test_comfy_cancel_concurrency import sim_call, sim_timing

    open_panel(page)
    prompt = f"a horse cancelled from the panel {time.time()}"
    find_row = f"""[...document.querySelectorAll('[data-job]')].find(r => r.textContent.includes({json.dumps(prompt)}))"""
    with sim_timing(inner_sim_url, queue_s=60, process_s=1):
        run = asyncio.ensure_future(run_prompt(comfy, t2v_prompt(prompt, 11), timeout_s=60))
        await asyncio.to_thread(page.wait_for, f"(r => r && r.dataset.state === 'queued' && "
                                f"!!r.querySelector('[data-action=cancel]'))({find_row})", timeout=30,
                                what="the queued job with a Cancel button")
        page.evaluate(f"{find_row}.querySelector('[data-action=cancel]').click(), true")
        result = await run
    assert result.status == "error"
    assert "cancelled at the provider too" in result.error_message(), result.error_message()
    await asyncio.to_thread(page.wait_for, f"(r => r && r.dataset.state === 'cancelled')({find_row})",
                            timeout=15, what="the row to say cancelled (pushed, not polled)")
    job = next(r for r in ledger_rows(comfy) if r["prompt"] == prompt)
    assert job["status"] == "canceled"
    assert sim_call(inner_sim_url, "/_sim/stats")["jobs"][job["task_id"]]["canceled"] is True


def vue_pill(page: Browser, node_id: int) -> list[str]:
    """The badge texts the Vue renderer shows on the node (its DOM), after the node-source badge."""
    return page.evaluate(f"""[...(document.querySelector('[data-node-id="{node_id}"]')?.querySelectorAll('div.rounded-sm')
      ?? [])].map(d => d.textContent.trim()).filter(t => t && t !== 'comfyui-happyhorse')""")


def set_setting(page: Browser, key: str, value) -> None:
    page.evaluate(f"app.extensionManager.setting.set({json.dumps(key)}, {json.dumps(value)}).then(() => true)")


def load_workflow(page: Browser, name: str) -> dict:
    data = json.loads((REPO / "workflows" / f"{name}.json").read_text())
    page.evaluate(f"app.loadGraphData({json.dumps(data)}).then(() => true)")
    page.wait_for(f"app.graph.nodes.length === {len(data['nodes'])}", what=f"{name} on the canvas")
    return data


def change(page: Browser, node_id: int, values: dict) -> None:
    """As a user's pick does: the value, then the widget's callback (both renderers call it), in order."""
    page.evaluate(f"""(() => {{
      const n = app.graph.getNodeById({node_id});
      for (const [name, value] of Object.entries({json.dumps(values)})) {{
        const w = n.widgets.find(w => w.name === name);
        w.value = value;
        w.callback?.(w.value, app.canvas, n);
      }}
      return true;
    }})()""")


def test_price_shows_and_follows_widgets_in_vue_node_mode(page):
    set_setting(page, "Comfy.VueNodes.Enabled", True)
    try:
        page.wait_for("app.extensionManager.setting.get('Comfy.VueNodes.Enabled') === true", what="Vue nodes on")
        data = load_workflow(page, "happyhorse_text_to_video")
        page.wait_for("!!document.querySelector('[data-node-id=\"1\"]')", what="the node drawn by the Vue renderer")
        page.wait_for("""[...document.querySelector('[data-node-id="1"]').querySelectorAll('div.rounded-sm')]
          .some(d => d.textContent.trim() === 'free')""", timeout=15, what="the Vue node to show 'free'")
        t2v = next(n for n in data["nodes"] if n["id"] == 1)
        widgets = {k: v for k, v in t2v["widgets_values_named"].items() if k.startswith("provider")}
        for step in ({"provider": "dashscope", "provider.version": "1.0"}, {"provider.version.duration": 10},
                     {"provider.version.resolution": "1080p"}):
            change(page, 1, step)
            widgets.update(step)
            label = price_for_widgets("HappyHorsePack.Text2Video", widgets)["label"]
            page.wait_for(f"""[...document.querySelector('[data-node-id="1"]').querySelectorAll('div.rounded-sm')]
              .some(d => d.textContent.trim() === {json.dumps(label)})""", timeout=15,
                          what=f"the Vue node to show {label!r} after {step}")
            assert vue_pill(page, 1) == [label]
        assert label == "~2.40 USD"
        page.screenshot(SCREENSHOTS / "happyhorse_vue_price.png")

        set_setting(page, "HappyHorse.PricePill", False)           # the user hides the pill
        page.wait_for("""![...document.querySelector('[data-node-id="1"]').querySelectorAll('div.rounded-sm')]
          .some(d => d.textContent.includes('USD'))""", what="the pill to go")
        set_setting(page, "HappyHorse.PricePill", True)
        page.wait_for("""[...document.querySelector('[data-node-id="1"]').querySelectorAll('div.rounded-sm')]
          .some(d => d.textContent.trim() === '~2.40 USD')""", what="the pill to come back")
    finally:
        set_setting(page, "HappyHorse.PricePill", True)
        set_setting(page, "Comfy.VueNodes.Enabled", False)


def test_default_provider_setting_applies_to_new_nodes_only(page):
    set_setting(page, "HappyHorse.DefaultProvider", "dashscope")
    try:
        data = load_workflow(page, "happyhorse_text_to_video")
        loaded = next(n for n in data["nodes"] if n["type"] == "HappyHorsePack.Text2Video")
        live = page.evaluate(f"""Object.fromEntries(app.graph.getNodeById({loaded['id']}).widgets
          .map(w => [w.name, w.value]))""")
        assert live == loaded["widgets_values_named"], "a loaded workflow keeps its own provider"
        added = page.evaluate("""(() => {
          const n = LiteGraph.createNode('HappyHorsePack.Text2Video');
          app.graph.add(n);
          return Object.fromEntries(n.widgets.map(w => [w.name, w.value]));
        })()""")
        assert added["provider"] == "dashscope" and "provider.version" in added
        priced = page.evaluate("""(() => {
          const n = LiteGraph.createNode('HappyHorsePack.CostEstimate');
          app.graph.add(n);
          return Object.fromEntries(n.widgets.map(w => [w.name, w.value]));
        })()""")
        assert priced["mode.provider"] == "dashscope", "Cost Estimate prices the provider the user works with"
        options = page.evaluate("""app.extensionManager.setting.settings['HappyHorse.DefaultProvider'].options()""")
        assert options[:2] == ["simulator", "dashscope"] and len(options) == 7
    finally:
        set_setting(page, "HappyHorse.DefaultProvider", "simulator")


def test_panel_shows_spend_per_provider_against_the_budget(page, comfy):
    # A paid DashScope job and a reAPI job of unknown price in ComfyUI's own ledger, a [budget] in the config
    # file ComfyUI reads: the spend block shows today's and this month's sums, spent of limit, unknown apart.
    from happyhorse.engine.budget import NOT_BILLED, BudgetLimits, spend_summary
    from happyhorse.engine.ledger import Ledger, LedgerStatus
    from happyhorse.engine.request import GenerationRequest

    config = comfy.base / "xdg-config" / "happyhorse" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[budget]\ndaily_usd = 5\nmonthly_usd = 50\n")
    ledger = Ledger(comfy.ledger_path)
    # Earlier tests in this session may have left billed jobs (e.g. a DashScope job after a failover): the block
    # must show them plus ours, so the expected sums start from what the ledger held before.
    earlier = spend_summary(ledger, BudgetLimits())
    today0, month0 = earlier.today.usd, earlier.month.usd
    ds0 = earlier.today.by_provider.get("dashscope")
    ds_usd0, ds_jobs0 = (ds0.usd, ds0.jobs) if ds0 else (0.0, 0)
    req = GenerationRequest(mode="t2v", prompt="a paid horse for the spend block", version="1.1", duration_s=5)
    paid = ledger.create(req, "dashscope", "https://dashscope-intl.aliyuncs.com", estimate_usd=0.70)
    ledger.update(paid, status=LedgerStatus.DONE, cost_usd=0.70)
    unknown = ledger.create(req.with_(prompt="a horse of unknown price"), "reapi", "https://example.invalid")
    ledger.update(unknown, status=LedgerStatus.DONE)
    try:
        open_panel(page)
        page.evaluate("document.querySelector('[data-action=refresh]').click(); true")
        text = page.wait_for("""(() => {
          const t = document.querySelector('.hh-spend [data-period="today"]')?.textContent;
          return t && t.includes('reAPI') && t;
        })()""", timeout=20, what="the spend block with both jobs")
        free = [r for r in ledger_rows(comfy) if r["provider"] == "simulator" and r["status"] not in NOT_BILLED]
        assert f"Today: {today0 + 0.70:.2f} USD of 5.00 USD, 1 job(s) of unknown price not counted" in text, text
        assert f"DashScope: {ds_usd0 + 0.70:.2f} USD, {ds_jobs0 + 1} job(s)" in text, text
        assert "reAPI: 0.00 USD, 1 job(s), 1 of unknown price" in text, text
        # the simulator's line shows its jobs that count (a cancelled one does not), and no line when there are none
        assert (f"Simulator (free, local): 0.00 USD, {len(free)} job(s)" in text) == bool(free), text
        month = page.evaluate("document.querySelector('.hh-spend [data-period=\"this month\"]').textContent")
        assert month.startswith(f"This month: {month0 + 0.70:.2f} USD of 50.00 USD"), month
        page.screenshot(SCREENSHOTS / "happyhorse_panel_spend.png")
    finally:
        config.unlink()
        with sqlite3.connect(comfy.ledger_path) as db:          # leave the session's ledger as the others expect
            db.execute("DELETE FROM jobs WHERE id IN (?, ?)", (paid, unknown))


def test_no_console_errors_from_the_pack(page):
    # Last in this module: it covers the panel, both node renderers and the settings used above.
    ours = [e for e in page.console if e.level in ("error", "warning") and e.mentions("happyhorse")]
    if page.errors():
        sys.stderr.write(f"\n[web] console errors from ComfyUI itself: {len(page.errors())}\n")
    assert not ours, f"console errors or warnings from the pack: {ours}"
