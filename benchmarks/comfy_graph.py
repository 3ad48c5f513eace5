"""8 Text2Video nodes in one real ComfyUI graph vs 1 node, against a loopback host that serves a ready clip.

The host speaks DashScope's protocol (submit, poll, download) in its simplest form: every job is PENDING for
HOST_S seconds, then SUCCEEDED with one pre-rendered 5 s 720p clip, so no rendering is timed - only what the
pack and ComfyUI add around the host's minutes. Each graph: N Text2Video nodes (distinct seeds), each with its
file_path shown by PreviewAny (so the VIDEO is not decoded). Needs COMFYUI_DIR (and COMFYUI_PYTHON).
A graph's time runs from POST /prompt to ComfyUI's execution_success event (what the UI shows); the 1-node and
N-node graphs alternate REPEATS times in one ComfyUI, and the medians are compared.
The same ComfyUI start reports what loading the pack cost: ComfyUI's own "Import times" figure (one decimal),
and Python's traced import time of the pack's entry (PYTHONPROFILEIMPORTTIME, which adds its own overhead).

    COMFYUI_DIR=... COMFYUI_PYTHON=... python -m benchmarks.comfy_graph [--nodes 8]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

from aiohttp import web
from happyhorse.simulator.video import ClipSpec, output_size, render_clip

from benchmarks.figures import Figure

HOST_S = 6.0
REPEATS = 3


def skip_reason() -> str | None:
    if not os.environ.get("COMFYUI_DIR"):
        return "COMFYUI_DIR is not set (a ComfyUI checkout; COMFYUI_PYTHON its python)"
    return None


class ReadyClipHost:
    """A DashScope-shaped host on 127.0.0.1 in its own thread; every job is ready after HOST_S seconds."""

    def __init__(self, clip: bytes):
        self.clip, self.jobs = clip, {}
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()

    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ReadyClipHost":
        threading.Thread(target=self._serve, daemon=True).start()
        self._ready.wait(10)
        return self

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/api/v1/services/aigc/video-generation/video-synthesis", self.submit)
        app.router.add_get("/api/v1/tasks/{task_id}", self.poll)
        app.router.add_get("/clip/{task_id}.mp4", self.download)
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()

    async def submit(self, request: web.Request) -> web.Response:
        task_id = uuid.uuid4().hex
        self.jobs[task_id] = time.monotonic()
        return web.json_response({"output": {"task_status": "PENDING", "task_id": task_id}, "request_id": "r"})

    async def poll(self, request: web.Request) -> web.Response:
        task_id = request.match_info["task_id"]
        if time.monotonic() - self.jobs[task_id] < HOST_S:
            return web.json_response({"output": {"task_id": task_id, "task_status": "RUNNING"}, "request_id": "r"})
        return web.json_response({"output": {"task_id": task_id, "task_status": "SUCCEEDED",
                                             "video_url": f"{self.base_url()}/clip/{task_id}.mp4"},
                                  "usage": {"duration": 5, "output_video_duration": 5, "video_count": 1},
                                  "request_id": "r"})

    async def download(self, request: web.Request) -> web.Response:
        return web.Response(body=self.clip, content_type="video/mp4")


def graph(nodes: int, first_seed: int) -> dict:
    prompt = {}
    for i in range(nodes):
        prompt[str(2 * i + 1)] = {"class_type": "HappyHorsePack.Text2Video", "inputs": {
            "prompt": "graph benchmark", "provider": "dashscope", "provider.version": "1.1",
            "provider.version.resolution": "720p", "provider.version.aspect_ratio": "16:9",
            "provider.version.duration": 5, "seed": first_seed + i, "watermark": False}}
        prompt[str(2 * i + 2)] = {"class_type": "PreviewAny", "inputs": {"source": [str(2 * i + 1), 3]}}
    return prompt


async def _measure(nodes: int, repeats: int):
    from tests.integration.server import ComfyServer, pack_load, python_for_comfy, run_prompt

    with tempfile.TemporaryDirectory() as tmp:
        clip_path = os.path.join(tmp, "ready.mp4")
        w, h = output_size("720p", "16:9")
        render_clip(ClipSpec(width=w, height=h, duration_s=5, prompt="ready clip", seed=1), clip_path)
        host = ReadyClipHost(Path(clip_path).read_bytes()).start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HAPPYHORSE_")}
        env.update({"DASHSCOPE_API_KEY": "sk-graph-benchmark", "HAPPYHORSE_DASHSCOPE_BASE_URL": host.base_url(),
                    "HAPPYHORSE_HOME": os.path.join(tmp, "hh"), "XDG_CONFIG_HOME": os.path.join(tmp, "xdg"),
                    "PYTHONPROFILEIMPORTTIME": "1"})
        server = ComfyServer(Path(os.environ["COMFYUI_DIR"]), python_for_comfy(), Path(tmp) / "comfy", env).start()
        try:
            warm = await run_prompt(server, graph(1, 1))          # first run loads what a first run loads
            assert warm.status == "success", warm.error_message()
            ones, manys = [], []
            for i in range(repeats):
                one = await run_prompt(server, graph(1, 100 + 100 * i))
                many = await run_prompt(server, graph(nodes, 1000 + 100 * i))
                assert one.status == many.status == "success", many.error_message()
                ones.append(one.seconds)
                manys.append(many.seconds)
        finally:
            server.stop()
        return statistics.median(ones), statistics.median(manys), pack_load(server.log_path.read_text(
            errors="replace"))


def figures(quick: bool = False, nodes: int = 8) -> list[Figure]:
    nodes, repeats = (4, 1) if quick else (nodes, REPEATS)
    one, many, load = asyncio.run(_measure(nodes, repeats))
    return [Figure(f"{nodes} Text2Video nodes in one real ComfyUI graph (host ready after {HOST_S:g} s, "
                   f"5 s 720p clip; median of {repeats})", round(many, 2), "s", "1 node", round(one, 2),
                   "<= 1.25x", many / one <= 1.25),
            Figure("pack load inside ComfyUI at start-up (ComfyUI's Import times line)", load.comfy_line_s, "s",
                   goal="< 0.15 s", met=load.comfy_line_s is not None and load.comfy_line_s < 0.15,
                   detail=f"traced import of the entry {load.import_s * 1000:.0f} ms, {len(load.modules)} modules")]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=8)
    if skip_reason():
        print(json.dumps({"skipped": skip_reason()}))
        return 0
    print(json.dumps([f.as_dict() for f in figures(nodes=ap.parse_args().nodes)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
