"""A real ComfyUI server for the integration tests, with the pack installed as a custom node, and a small client.

Everything lives in a temporary --base-directory (custom_nodes, input, output, user, temp), so a test run never
touches the ComfyUI checkout's own folders; the database is in memory.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[2]
PACK_NAME = "comfyui-happyhorse"
START_TIMEOUT_S = 600       # a loaded 2-core machine has taken over 100 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ComfyServer:
    comfy_dir: Path
    python: str
    base: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    pack_names: tuple[str, ...] = (PACK_NAME,)     # more than one: copies of the pack under other folder names
    process: subprocess.Popen | None = None
    started_s: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.base / "comfyui.log"

    @property
    def output_dir(self) -> Path:
        return self.base / "output"

    @property
    def ledger_path(self) -> Path:
        return self.base / "user" / "happyhorse" / "jobs.sqlite3"

    def start(self) -> ComfyServer:
        for sub in ("custom_nodes", "input", "output", "user"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        for name in self.pack_names:
            (self.base / "custom_nodes" / name).symlink_to(REPO, target_is_directory=True)
        for f in (REPO / "workflows" / "input").iterdir():
            shutil.copy(f, self.base / "input" / f.name)
        cmd = [self.python, str(self.comfy_dir / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port",
               str(self.port), "--disable-auto-launch", "--base-directory", str(self.base),
               "--database-url", "sqlite:///:memory:"]
        t0 = time.monotonic()
        with open(self.log_path, "wb") as log:       # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(cmd, cwd=self.comfy_dir, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited during start-up:\n{self.log_tail()}")
            try:
                urllib.request.urlopen(self.url + "/system_stats", timeout=2).read()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() - t0 > START_TIMEOUT_S:
                    self.stop()
                    raise RuntimeError(f"ComfyUI did not answer within {START_TIMEOUT_S} s:\n{self.log_tail()}")
                time.sleep(0.5)
        self.started_s = time.monotonic() - t0
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- HTTP ----------------------------------------------------------------------------------------
    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as resp:
            return json.load(resp)

    def post_json(self, path: str, body: Any) -> tuple[int, Any]:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def object_info(self) -> dict[str, dict]:
        return self.get_json("/object_info")


@dataclass
class RunResult:
    prompt_id: str
    history: dict
    messages: list[tuple[str, Any, float]]   # websocket JSON events (kind, data, monotonic arrival time)
    texts: list[tuple[float, str, str]]      # (monotonic time, node id, progress text)
    seconds: float                           # from POST /prompt to the prompt's last event (what the UI shows)

    @property
    def status(self) -> str:
        return self.history["status"]["status_str"]

    def event(self, kind: str) -> dict | None:
        return next((data for k, data, _ in self.messages if k == kind), None)

    def error_message(self) -> str:
        err = self.event("execution_error")
        return err["exception_message"] if err else ""

    def saved_videos(self, output_dir: Path) -> list[Path]:
        files = []
        for out in self.history.get("outputs", {}).values():
            for item in out.get("images", []):
                if item.get("filename", "").endswith(".mp4") and item.get("type") == "output":
                    files.append(output_dir / item.get("subfolder", "") / item["filename"])
        return files


async def run_prompt(server: ComfyServer, prompt: dict, *, timeout_s: float = 240.0, extra_data: dict | None = None,
                     interrupt_when=None) -> RunResult:
    """Submit through POST /prompt, follow the websocket, return /history. interrupt_when(texts) -> bool
    triggers POST /interrupt once when it first returns True (its time is recorded as an 'interrupt' event)."""
    client_id = uuid.uuid4().hex
    messages: list[tuple[str, Any, float]] = []
    texts: list[tuple[float, str, str]] = []
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{server.url}/ws?clientId={client_id}") as ws:
        body = {"prompt": prompt, "client_id": client_id, **({"extra_data": extra_data} if extra_data else {})}
        async with session.post(server.url + "/prompt", json=body) as resp:
            answer = await resp.json()
            if resp.status != 200:
                raise PromptRejected(answer)
        prompt_id = answer["prompt_id"]
        interrupted = False
        while True:
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout_s} s:\n"
                                   f"{server.log_tail()}")
            if interrupt_when is not None and not interrupted and interrupt_when(texts):
                messages.append(("interrupt", None, time.monotonic()))
                async with session.post(server.url + "/interrupt", json={"prompt_id": prompt_id}) as r:
                    assert r.status == 200
                interrupted = True
            try:
                msg = await ws.receive(timeout=0.2)
            except asyncio.TimeoutError:
                continue
            now = time.monotonic()
            if msg.type == aiohttp.WSMsgType.BINARY:
                if struct.unpack(">I", msg.data[:4])[0] == 3:        # progress text
                    n = struct.unpack(">I", msg.data[4:8])[0]
                    texts.append((now, msg.data[8:8 + n].decode(), msg.data[8 + n:].decode()))
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"websocket closed: {msg.type}")
            data = json.loads(msg.data)
            payload = data.get("data") or {}
            messages.append((data["type"], payload, now))
            if payload.get("prompt_id") == prompt_id and data["type"] in (
                    "execution_success", "execution_error", "execution_interrupted"):
                break
    seconds = now - t0           # the history is fetched after: its polling is not the prompt's time
    history = await _history(server, prompt_id)
    return RunResult(prompt_id, history, messages, texts, seconds)


async def _history(server: ComfyServer, prompt_id: str) -> dict:
    for _ in range(100):
        entry = server.get_json(f"/history/{prompt_id}")
        if entry:
            return entry[prompt_id]
        await asyncio.sleep(0.1)
    raise TimeoutError(f"no history for {prompt_id}")


class PromptRejected(Exception):
    def __init__(self, answer: dict):
        self.answer = answer
        super().__init__(json.dumps(answer)[:2000])


def python_for_comfy() -> str:
    return os.environ.get("COMFYUI_PYTHON") or sys.executable


@dataclass(frozen=True)
class PackLoad:
    """What loading the pack cost ComfyUI at start-up, read from a log written with PYTHONPROFILEIMPORTTIME=1."""

    modules: tuple[str, ...]        # every module first imported while the pack's entry loaded (ours relative)
    import_s: float                 # Python's own figure for that import (cumulative, includes the tracing)
    comfy_line_s: float | None      # ComfyUI's "Import times for custom nodes" figure (one decimal)


def pack_load(log: str, pack_name: str = PACK_NAME) -> PackLoad:
    """The import tree under the pack's entry module (importtime prints a module's children before it, indented
    deeper), and ComfyUI's own line for the pack."""
    rows = [line.split("|") for line in log.splitlines() if line.startswith("import time:")]
    ours = f"custom_nodes/{pack_name}."
    entry = max(i for i, r in enumerate(rows) if r[2].rstrip().endswith(ours + "nodes.comfy.extension"))

    def depth(row: list[str]) -> int:
        return len(row[2]) - len(row[2].lstrip())

    names, i = [], entry - 1
    while i >= 0 and depth(rows[i]) > depth(rows[entry]):
        names.append(rows[i][2].strip())
        i -= 1
    modules = tuple(n.split(ours, 1)[1] if ours in n else n for n in reversed(names))
    comfy = [line for line in log.splitlines() if line.rstrip().endswith(f"custom_nodes/{pack_name}")
             and "seconds:" in line]
    seconds = float(comfy[-1].split("seconds:")[0].split()[-1]) if comfy else None
    return PackLoad(modules, int(rows[entry][1]) / 1e6, seconds)
