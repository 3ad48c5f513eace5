"""Frames and audio are decoded only when the prompt links them; linking them later re-runs the node without
paying again. Memory is read from the ComfyUI process itself (its cache holds the outputs after a run)."""
from __future__ import annotations

import pytest

from .conftest import ledger_rows, t2v_prompt
from .server import ComfyServer, run_prompt

pytestmark = pytest.mark.integration

# 3 s of 1280x720 at 24 fps: 72 float32 frames are 796 MB, all of them fit under this ceiling.
FRAMES_MB = 2048
FRAMES_TENSOR_MB = 72 * 1280 * 720 * 3 * 4 / 2**20


def rss_mb(server: ComfyServer) -> float:
    with open(f"/proc/{server.process.pid}/status") as fh:
        kb = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
    return kb / 1024


def with_frames_size(prompt: dict) -> dict:
    """frames -> GetImageSize -> batch size shown by PreviewAny."""
    prompt.update({"5": {"class_type": "GetImageSize", "inputs": {"image": ["1", 1]}},
                   "6": {"class_type": "PreviewAny", "inputs": {"source": ["5", 2]}}})
    return prompt


def final_text(result, node: str = "1") -> str:
    return [t for _, n, t in result.texts if n == node][-1]


async def test_video_only_decodes_nothing_and_linking_frames_later_reruns_for_free(comfy):
    video_only = t2v_prompt("lazy outputs: video only", 401, extra={"frames_max_mb": FRAMES_MB})
    # Earlier tests' cached outputs are dropped when the next prompt runs: drop them before measuring.
    warm = await run_prompt(comfy, t2v_prompt("lazy outputs: warm-up", 400, extra={"frames_max_mb": FRAMES_MB}))
    assert warm.status == "success", warm.error_message()
    before = rss_mb(comfy)
    first = await run_prompt(comfy, video_only)
    assert first.status == "success", first.error_message()
    assert "Frames: not decoded (the frames output is not connected)" in final_text(first)
    after_video_only = rss_mb(comfy)
    video_only_growth = after_video_only - before
    submitted = len(ledger_rows(comfy))

    # Same inputs, frames now linked: ComfyUI must not hand on its cached result (which has no frames).
    linked = await run_prompt(comfy, with_frames_size(
        t2v_prompt("lazy outputs: video only", 401, extra={"frames_max_mb": FRAMES_MB})))
    assert linked.status == "success", linked.error_message()
    assert linked.history["outputs"]["6"]["text"][0] == "72"
    assert "Frames: 72 of 72" in final_text(linked)
    assert "nothing submitted or billed again" in final_text(linked)
    assert len(ledger_rows(comfy)) == submitted, "the re-run reused the finished video"
    frames_growth = rss_mb(comfy) - after_video_only

    # ComfyUI's cache keeps each run's outputs: the frames run holds the tensor, the video-only run held none.
    assert video_only_growth < 150, f"video only grew ComfyUI by {video_only_growth:.0f} MB"
    assert frames_growth > 0.8 * FRAMES_TENSOR_MB, f"linking frames grew ComfyUI by only {frames_growth:.0f} MB"


async def test_force_new_rerun_for_wiring_does_not_pay_again(comfy):
    extra = {"frames_max_mb": 64, "force_new": True}
    first = await run_prompt(comfy, t2v_prompt("lazy outputs: force new", 402, extra=extra))
    assert first.status == "success", first.error_message()
    submitted = len(ledger_rows(comfy))
    linked = await run_prompt(comfy, with_frames_size(t2v_prompt("lazy outputs: force new", 402, extra=extra)))
    assert linked.status == "success", linked.error_message()
    assert linked.history["outputs"]["6"]["text"][0] == "6"            # 64 MB of 720p frames
    assert len(ledger_rows(comfy)) == submitted, "force_new pays once per run of new inputs, not per re-wiring"
    again = await run_prompt(comfy, t2v_prompt("lazy outputs: force new", 403, extra=extra))
    assert again.status == "success", again.error_message()
    assert len(ledger_rows(comfy)) == submitted + 1, "a new seed is a new paid job"
