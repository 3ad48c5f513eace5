"""Headless Chromium driven over the DevTools protocol with aiohttp's websocket client (no Selenium, no Playwright).

The API is synchronous: the websocket lives on a private event loop in a background thread, so session- and
module-scoped fixtures and plain (non-async) tests can share one browser.
"""
from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Headless and quiet: no first-run UI, and no traffic of its own (the tests only talk to loopback servers).
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--remote-debugging-port=0")
START_TIMEOUT_S = 30.0


def find_chromium() -> str | None:
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


@dataclass
class ConsoleEntry:
    level: str             # "error", "warning", ...
    source: str            # "console" (console.*), "exception" (uncaught), or the Log domain's: "network", ...
    text: str
    urls: tuple[str, ...]  # the script or resource the entry comes from, and its stack frames

    def mentions(self, needle: str) -> bool:
        needle = needle.lower()
        return needle in self.text.lower() or any(needle in u.lower() for u in self.urls)


class EvaluationError(AssertionError):
    pass


class Browser:
    """One headless Chromium with one page. evaluate() runs JavaScript in the page and returns its JSON value."""

    def __init__(self, binary: str, profile_dir: Path, *, width: int = 1400, height: int = 900):
        self.binary = binary
        self.profile_dir = profile_dir
        self.size = (width, height)
        self.console: list[ConsoleEntry] = []
        self._process: subprocess.Popen | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="cdp", daemon=True)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task | None = None

    # --- life cycle --------------------------------------------------------------------------------
    def start(self) -> Browser:
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        port_file = self.profile_dir / "DevToolsActivePort"
        with open(self.profile_dir / "chromium.log", "wb") as log:
            # Its own session, so close() can end the browser together with its renderer processes.
            self._process = subprocess.Popen([self.binary, *FLAGS, f"--user-data-dir={self.profile_dir}",
                                              "about:blank"], stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self._attach(port_file)
        except BaseException:
            self.close()
            raise
        return self

    def _attach(self, port_file: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Chromium did not start:\n{self.log_tail()}")
            time.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            pages = [t for t in json.load(resp) if t["type"] == "page"]
        self._thread.start()
        self._run(self._connect(pages[0]["webSocketDebuggerUrl"]))
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable")
        width, height = self.size
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def close(self) -> None:
        if self._thread.is_alive():
            self._run(self._disconnect())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.profile_dir / "chromium.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # --- protocol ----------------------------------------------------------------------------------
    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict:
        return self._run(self._call(method, params), timeout)

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """The value of a JavaScript expression (awaited if it is a promise); a thrown error fails the test."""
        answer = self.call("Runtime.evaluate", timeout, expression=expression, awaitPromise=True,
                           returnByValue=True)
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            raise EvaluationError(details.get("exception", {}).get("description") or details.get("text"))
        return answer["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float = 10.0, what: str = "") -> Any:
        """Polls until the expression is truthy and returns its value (a condition, never a fixed sleep)."""
        deadline = time.monotonic() + timeout
        value: Any = None
        while True:
            try:
                value = self.evaluate(expression)
            except EvaluationError as exc:   # e.g. the page's globals do not exist yet
                value = f"(threw: {exc})"
            else:
                if value:
                    return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what or expression}; "
                                     f"last value: {value!r}")
            time.sleep(0.05)

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def errors(self) -> list[ConsoleEntry]:
        return [e for e in self.console if e.level == "error"]

    # --- internals ---------------------------------------------------------------------------------
    def _run(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _connect(self, ws_url: str) -> None:
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(ws_url, max_msg_size=0)   # screenshots exceed 4 MB
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _disconnect(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, params: dict) -> dict:
        msg_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        await self._ws.send_json({"id": msg_id, "method": method, "params": params})
        return await future

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is None or future.done():
                    continue
                if "error" in data:
                    future.set_exception(RuntimeError(f"CDP error: {data['error']}"))
                else:
                    future.set_result(data.get("result", {}))
            else:
                self._on_event(data["method"], data.get("params", {}))
        for future in self._pending.values():     # the browser went away: fail the callers instead of hanging
            if not future.done():
                future.set_exception(ConnectionError("Chromium closed the DevTools connection"))

    def _on_event(self, method: str, params: dict) -> None:
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            urls = _frame_urls(params.get("stackTrace"))
            self.console.append(ConsoleEntry(params["type"], "console", text, urls))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text", "")
            urls = (details.get("url", ""), *_frame_urls(details.get("stackTrace")))
            self.console.append(ConsoleEntry("error", "exception", text, tuple(u for u in urls if u)))
        elif method == "Log.entryAdded":
            entry = params["entry"]
            urls = (entry.get("url", ""), *_frame_urls(entry.get("stackTrace")))
            self.console.append(ConsoleEntry(entry["level"], entry.get("source", ""), entry.get("text", ""),
                                             tuple(u for u in urls if u)))


def _frame_urls(stack: dict | None) -> tuple[str, ...]:
    return tuple(f["url"] for f in (stack or {}).get("callFrames", []) if f.get("url"))
