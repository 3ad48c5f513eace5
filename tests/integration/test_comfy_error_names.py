"""A refused prompt in the real ComfyUI names the widget or socket the user sees (comfy/words.py), not the
engine's field (reference_images[3], source_video); nothing is sent or recorded."""
from __future__ import annotations

import pytest

from .conftest import ledger_rows
from .server import run_prompt

pytestmark = pytest.mark.integration

SIM = {"provider": "simulator", "provider.version": "1.1", "provider.version.resolution": "720p",
       "provider.version.aspect_ratio": "16:9", "provider.version.duration": 3}


def empty_image(side: int, batch: int = 1) -> dict:
    return {"class_type": "EmptyImage", "inputs": {"width": side, "height": side, "batch_size": batch,
                                                   "color": 0x3366CC}}


async def run_refused(comfy, prompt: dict) -> str:
    """Run the graph with node "1" saved (a prompt needs an output); return the error ComfyUI reports."""
    save = {"video": ["1", 0], "filename_prefix": "video/hh_names", "format": "mp4", "format.codec": "h264"}
    prompt = {**prompt, "9": {"class_type": "SaveVideo", "inputs": save}}
    before = len(ledger_rows(comfy))
    result = await run_prompt(comfy, prompt)
    assert result.status == "error"
    assert len(ledger_rows(comfy)) == before, "refused before anything was sent"
    return result.error_message()


async def test_a_small_reference_is_named_by_its_socket(comfy):
    # two pictures in the batch input, image1 left empty, a 64 px picture in image2: reference 3 is image2's
    node = {"prompt": "character1 meets character2 and character3", "images": ["2", 0],
            "references.image2": ["3", 0], "seed": 11, **SIM}
    message = await run_refused(comfy, {"1": {"class_type": "HappyHorsePack.Reference2Video", "inputs": node},
                                        "2": empty_image(400, batch=2), "3": empty_image(64)})
    assert "  - image2: is 64x64" in message, message
    assert "reference_images" not in message


async def test_no_reference_names_the_reference_inputs(comfy):
    node = {"prompt": "a horse", "seed": 12, **SIM}
    message = await run_refused(comfy, {"1": {"class_type": "HappyHorsePack.Reference2Video", "inputs": node}})
    assert "  - images/image1..9: 0 given" in message, message


async def test_an_edit_without_a_source_says_to_connect_video(comfy):
    node = {"prompt": "make it snow", "seed": 13, "audio_setting": "auto", "provider": "simulator",
            "provider.version": "1.0", "provider.version.resolution": "720p"}
    message = await run_refused(comfy, {"1": {"class_type": "HappyHorsePack.VideoEdit", "inputs": node}})
    assert "  - video: video edit needs a source video; connect video" in message, message
    assert "source_video" not in message
