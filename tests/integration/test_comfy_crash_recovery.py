"""Kill ComfyUI (SIGKILL) while a paid job is polling, restart it, queue the same workflow: the same job's video
comes back and the host counted exactly one submission."""
from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path

import av
import pytest

from .conftest import KEY_ENV_SUFFIXES, t2v_prompt
from .server import PACK_NAME, ComfyServer, python_for_comfy, run_prompt

pytestmark = pytest.mark.integration


def _task_ids(ledger: Path) -> list[tuple[str, str]]:
    if not ledger.exists():
        return []
    with sqlite3.connect(ledger) as db:
        return db.execute("SELECT task_id, status FROM jobs WHERE task_id IS NOT NULL").fetchall()


async def test_sigkill_mid_job_then_requeue_attaches_to_the_same_job(tmp_path):
    comfy_dir = os.environ.get("COMFYUI_DIR")
    if not comfy_dir:
        sys.stderr.write("\n[integration] skipped: COMFYUI_DIR is not set\n")
        pytest.skip("COMFYUI_DIR is not set: point it at a ComfyUI checkout (and COMFYUI_PYTHON at its python)")
    from happyhorse.simulator.core import SimTiming
    from happyhorse.simulator.server import SimulatorServer

    # The host outlives ComfyUI, as a real provider does; its jobs take long enough to kill ComfyUI mid-poll.
    with SimulatorServer(timing=SimTiming(queue_s=1.0, process_s=8.0)) as host:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("HAPPYHORSE_") and not k.endswith(KEY_ENV_SUFFIXES)}
        env.update({"DASHSCOPE_API_KEY": "sk-crash-recovery", "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
                    "HAPPYHORSE_DASHSCOPE_BASE_URL": host.base_url("dashscope")})
        base = tmp_path / "comfy"
        prompt = t2v_prompt("a horse that survives a crash", 7070, provider="dashscope")

        first = ComfyServer(Path(comfy_dir), python_for_comfy(), base, env).start()
        try:
            status, answer = first.post_json("/prompt", {"prompt": prompt, "client_id": "crash-test"})
            assert status == 200, answer
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not _task_ids(first.ledger_path):
                time.sleep(0.2)
            recorded = _task_ids(first.ledger_path)
            assert recorded, "the task id was never recorded"
            time.sleep(1.5)                              # let it poll a few times
            assert host.core.submissions["dashscope"] == 1
        finally:
            first.process.kill()                         # SIGKILL: no cleanup, no goodbye
            first.process.wait(20)
        assert not list(first.output_dir.rglob("*.mp4")), "nothing should have been saved before the crash"
        task_id = recorded[0][0]
        assert host.core.view(task_id).state in ("queued", "running"), "the job must still be in flight"

        (base / "custom_nodes" / PACK_NAME).unlink()    # start() links the pack again
        second = ComfyServer(Path(comfy_dir), python_for_comfy(), base, env).start()
        try:
            result = await run_prompt(second, prompt, timeout_s=120)
        finally:
            second.stop()
        assert result.status == "success", result.error_message()
        assert any("re-attached" in text for _, _, text in result.texts), "the node should say it re-attached"
        assert host.core.submissions["dashscope"] == 1, "the job was paid for twice"
        assert _task_ids(second.ledger_path) == [(task_id, "done")]
        videos = result.saved_videos(second.output_dir)
        assert videos
        with av.open(str(videos[0])) as c:
            assert c.streams.video[0].codec_context.name == "h264" and len(c.streams.audio) == 1
