"""web/happyhorse.js and web/panel.js in a real headless Chromium, without ComfyUI.

A loopback server plays ComfyUI's part: it serves the real extensions where ComfyUI serves a pack's web/ folder,
stand-ins for ComfyUI's scripts/app.js and scripts/api.js (tests/web/harness/), and the pack's routes
(POST /api/happyhorse/price, the panel's) through its own handlers (nodes/comfy/routes.py), so every price comes
from the engine's tables. This host has no sidebar tabs and no settings: what an older frontend offers. Only the
host is stood in for; the price protocol is the real one. Without Chromium every test here is skipped.
"""
from __future__ import annotations

import asyncio
import json
import sys
import threading
from pathlib import Path

import pytest
from aiohttp import web
from happyhorse.comfy import routes
from happyhorse.comfy.estimates import price_for_widgets

from .cdp import Browser, ConsoleEntry, find_chromium

REPO = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).resolve().parent / "harness"
T2V, EDIT, COST = "HappyHorsePack.Text2Video", "HappyHorsePack.VideoEdit", "HappyHorsePack.CostEstimate"

T2V_WIDGETS = {"prompt": "a horse on a beach", "provider": "simulator", "provider.version": "1.1",
               "provider.version.resolution": "720p", "provider.version.aspect_ratio": "16:9",
               "provider.version.duration": 5, "seed": 0, "watermark": False}


class HarnessServer:
    """The harness on 127.0.0.1, in a background thread with its own event loop."""

    def __init__(self, home: Path) -> None:
        self.url = ""
        self.home = home
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="web-harness", daemon=True)
        self._runner: web.AppRunner | None = None

    def start(self) -> HarnessServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/", _file("index.html"))
        app.router.add_get("/harness.js", _file("harness.js"))
        app.router.add_static("/scripts", HARNESS / "scripts")
        app.router.add_static("/extensions/comfyui-happyhorse", REPO / "web")   # as ComfyUI serves WEB_DIRECTORY
        app.router.add_post("/api" + routes.ROUTE, routes.price)                # the pack's own handlers
        panel = routes.Panel(self.home / "jobs.sqlite3", self.home / "output")
        for method, path, handler in panel.routes():
            app.router.add_route(method, "/api" + path, handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def _file(name: str):
    async def handler(_: web.Request) -> web.FileResponse:
        return web.FileResponse(HARNESS / name)
    return handler


def unexpected(entries: list[ConsoleEntry]) -> list[ConsoleEntry]:
    """Console errors, except Chromium's network line for a 400 from the price route: that is the protocol's
    "no price for these settings" (the pill shows why), not a failure."""
    return [e for e in entries if not (e.source == "network" and "400" in e.text
                                       and any(u.endswith("/api" + routes.ROUTE) for u in e.urls))]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    binary = find_chromium()
    if binary is None:
        reason = "no Chromium on PATH (chromium, chromium-browser or google-chrome): the browser tests need one"
        sys.stderr.write(f"\n[web] skipped: {reason}\n")
        pytest.skip(reason)
    server = HarnessServer(tmp_path_factory.mktemp("harness-home")).start()
    browser = None
    try:
        browser = Browser(binary, tmp_path_factory.mktemp("chromium"), width=900, height=700).start()
        browser.goto(server.url + "/")
        browser.wait_for("window.harness && window.harness.ready", timeout=15, what="the harness and extension")
        yield browser
    finally:
        if browser is not None:
            browser.close()
        server.stop()


@pytest.fixture
def harness(page):
    page.evaluate("harness.reset()")
    yield page
    errors = unexpected(page.errors())
    page.console.clear()
    assert not errors, f"browser console errors: {errors}"


def create(page: Browser, node_type: str, widgets: dict) -> int:
    return page.evaluate(f"harness.createNode({json.dumps(node_type)}, {json.dumps(widgets)})")


def set_widget(page: Browser, node: int, name: str, value) -> None:
    page.evaluate(f"harness.setWidget({node}, {json.dumps(name)}, {json.dumps(value)})")


def wait_pill(page: Browser, node: int, condition: str, what: str) -> str:
    """Waits until the text painted on the node's pill satisfies `condition` (JS, over `t`); returns the text."""
    return page.wait_for(f"(t => ({condition}) && t)(harness.drawn({node}).join(' | '))", timeout=10, what=what)


def expect_pill(page: Browser, node: int, label: str) -> None:
    wait_pill(page, node, f"t === {json.dumps(label)}", f"the pill to read {label!r}")


def engine_label(node_type: str, widgets: dict) -> str:
    return price_for_widgets(node_type, widgets)["label"]


def test_extension_registers_with_the_app(harness):
    names = harness.evaluate("harness.app.extensions.map(e => e.name)")
    assert names == ["happyhorse.pricePill", "happyhorse.panel"]
    assert harness.evaluate("typeof harness.app.extensions[0].nodeCreated") == "function"


def test_a_host_without_sidebar_tabs_or_settings_gets_no_panel_and_no_errors(harness):
    # This host has no extensionManager: no sidebar tabs, no settings. Both extensions set up quietly, a job
    # event from the server is taken in without a panel to show it, and the pill keeps its default (shown).
    harness.evaluate("Promise.all(harness.app.extensions.map(e => e.setup?.())).then(() => true)")
    harness.evaluate("""harness.api.dispatchEvent(new CustomEvent('happyhorse.job', {detail: {job: {id: 'a'.repeat(32),
      state: 'running', created_at: Date.now() / 1000, elapsed_s: 1}}})), true""")
    node = create(harness, T2V, T2V_WIDGETS)
    expect_pill(harness, node, "free")


def test_pill_follows_every_setting_with_the_engines_price(harness):
    node = create(harness, T2V, T2V_WIDGETS)
    expect_pill(harness, node, "free")

    widgets = dict(T2V_WIDGETS)
    seen = ["free"]
    for name, value in [("provider", "dashscope"), ("provider.version.resolution", "1080p"),
                        ("provider.version", "1.0"), ("provider.version.duration", 10)]:
        widgets[name] = value
        set_widget(harness, node, name, value)
        label = engine_label(T2V, widgets)
        assert label != seen[-1], f"{name}={value} does not change the price, so it would prove nothing"
        expect_pill(harness, node, label)
        seen.append(label)
    assert seen[-1] == "~2.40 USD"              # DashScope 1.0, 1080p, 10 s: 0.24 USD/s x 10 s

    set_widget(harness, node, "provider", "simulator")
    expect_pill(harness, node, "free")

    # The pill asks with the pricing settings only, under the node's own type: the prompt never leaves.
    bodies = [r["body"] for r in harness.evaluate("harness.api.requests")]
    assert bodies and all(b["node_type"] == T2V for b in bodies)
    assert all(set(b["widgets"]) <= {k for k in T2V_WIDGETS if k.startswith("provider")} for b in bodies)


def test_cost_estimate_node_gets_a_pill_too(harness):
    widgets = {"mode": "t2v", "mode.provider": "dashscope", "mode.provider.version": "1.1",
               "mode.provider.version.resolution": "1080p", "mode.provider.version.aspect_ratio": "16:9",
               "mode.provider.version.duration": 10}
    node = create(harness, COST, widgets)
    expect_pill(harness, node, "~1.80 USD")     # as docs/nodes.md and the cost-estimate workflow say
    assert engine_label(COST, widgets) == "~1.80 USD"


def test_invalid_combination_says_why_and_never_keeps_the_old_price(harness):
    widgets = {"prompt": "", "provider": "dashscope", "provider.version": "1.0", "provider.version.resolution": "720p",
               "provider.upload": "auto", "audio_setting": "auto"}
    node = create(harness, EDIT, widgets)
    valid = engine_label(EDIT, widgets)
    expect_pill(harness, node, valid)

    set_widget(harness, node, "provider.version", "1.1")   # HappyHorse 1.1 has no video edit
    text = wait_pill(harness, node, "t.startsWith('no price:')", "the pill to say there is no price")
    assert "Version '1.1' is not offered by dashscope" in text, text
    assert "USD" not in text
    width = harness.evaluate(f"harness.drawnWidths({node})[0]")
    assert 0 < width <= 420, f"the message pill is {width} px wide"   # cut to the node's width at most

    set_widget(harness, node, "provider.version", "1.0")
    expect_pill(harness, node, valid)


def test_late_answer_for_old_settings_does_not_replace_the_current_one(harness):
    widgets = {**T2V_WIDGETS, "provider": "dashscope", "provider.version": "1.0"}
    node = create(harness, T2V, widgets)
    expect_pill(harness, node, engine_label(T2V, widgets))

    harness.evaluate("harness.holdWhere(w => w.provider === 'dashscope' "
                     "&& w['provider.version.resolution'] === '1080p')")
    set_widget(harness, node, "provider.version.resolution", "1080p")          # asked, answer held back
    harness.wait_for("harness.api.inflight === 1", what="the 1080p request to be held")
    set_widget(harness, node, "provider", "simulator")                         # asked later, answered at once
    expect_pill(harness, node, "free")

    harness.evaluate("harness.release()")
    harness.wait_for("harness.api.inflight === 0", what="the held answer to arrive")
    harness.evaluate("harness.afterTicks(10)")
    assert harness.evaluate(f"harness.drawn({node})") == ["free"]


def test_nodes_without_a_price_get_no_pill(harness):
    collect = create(harness, "HappyHorsePack.CollectJob", {"provider": "simulator", "task_id": ""})
    save = create(harness, "SaveVideo", {"filename_prefix": "video/x", "format": "mp4"})
    priced = create(harness, T2V, T2V_WIDGETS)
    expect_pill(harness, priced, "free")        # the canvas has drawn all three by now
    assert harness.evaluate(f"[harness.drawn({collect}), harness.drawn({save})]") == [[], []]
    assert {r["body"]["node_type"] for r in harness.evaluate("harness.api.requests")} == {T2V}
