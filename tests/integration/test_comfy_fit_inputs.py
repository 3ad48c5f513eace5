"""fit_inputs on the nodes: off refuses an input that breaks the host's limits and says fit_inputs would
repair it; crop / pad repairs only that input and shows what changed."""
from __future__ import annotations

import pytest

from .conftest import ledger_rows
from .server import run_prompt

pytestmark = pytest.mark.integration


def small_first_frame(seed: int, fit: str | None) -> dict:
    """A 200x150 picture made in the graph (the simulator, like DashScope, wants 300 px a side)."""
    node = {"prompt": "a small picture, pushed in", "first_frame": ["3", 0], "provider": "simulator",
            "provider.version": "1.1", "provider.version.resolution": "720p", "provider.version.duration": 3,
            "seed": seed, **({"fit_inputs": fit} if fit else {})}
    return {"1": {"class_type": "HappyHorsePack.Image2Video", "inputs": node},
            "2": {"class_type": "SaveVideo", "inputs": {"video": ["1", 0], "filename_prefix": "video/hh_fit",
                                                        "format": "mp4", "format.codec": "h264"}},
            "3": {"class_type": "EmptyImage", "inputs": {"width": 200, "height": 150, "batch_size": 1,
                                                         "color": 0x3366CC}}}


async def test_off_refuses_and_names_fit_inputs(comfy):
    before = len(ledger_rows(comfy))
    result = await run_prompt(comfy, small_first_frame(401, None))         # left out: off, its default
    message = result.error_message()
    assert result.status == "error" and "200x150" in message and "at least 300 px" in message
    assert "fit_inputs: set it to crop or pad" in message
    assert len(ledger_rows(comfy)) == before, "refused before anything was sent"


async def test_crop_repairs_the_small_picture_and_says_so(comfy):
    result = await run_prompt(comfy, small_first_frame(402, "crop"))
    assert result.status == "success", result.error_message()
    texts = " ".join(t for _, node, t in result.texts if node == "1")
    assert "fit_inputs: first_frame: upscaled 200x150 -> 400x300" in texts
    [video] = result.saved_videos(comfy.output_dir)
    from happyhorse.engine.media import probe_video
    info = probe_video(video)
    assert (info.width, info.height) == (960, 720)                          # 4:3 kept, 720p
