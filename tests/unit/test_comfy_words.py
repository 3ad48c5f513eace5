"""Errors on the nodes name the widget or socket the user sees (comfy/words.py), not the engine's field."""
from __future__ import annotations

import asyncio

import pytest
import torch
from happyhorse.comfy import words
from happyhorse.engine.errors import ConfigError, HappyHorseError, ValidationError
from happyhorse.engine.request import GenerationRequest, MediaInput
from happyhorse.engine.validation import validate_request
from happyhorse.providers.simulator import SimulatorAdapter

CAPS = SimulatorAdapter.caps
URL = "https://example.invalid/picture.png"


def refused(req: GenerationRequest) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        validate_request(req, CAPS)
    return info.value


def shown(surface, exc: HappyHorseError, **inputs) -> str:
    """What ComfyUI shows: str() of the exception leaving the wrapped execute."""
    @words.in_widget_words(surface)
    async def execute(cls, **values):
        raise exc
    with pytest.raises(HappyHorseError) as info:
        asyncio.run(execute(object, **inputs))
    assert info.value is exc                     # the same exception (type, task id, ...), only reworded
    return str(info.value)


def test_text2video_names_the_duration_widget():
    exc = refused(GenerationRequest(mode="t2v", version="1.1", prompt="a horse", duration_s=99))
    text = shown(words.TEXT2VIDEO, exc)
    assert "  - duration: 99 is out of range" in text and "duration_s" not in text


def test_image2video_says_to_connect_first_frame():
    text = shown(words.IMAGE2VIDEO, refused(GenerationRequest(mode="i2v", version="1.1", prompt="x")))
    assert "first_frame: image-to-video needs exactly one first-frame image; connect first_frame" in text


def test_reference2video_names_the_socket_holding_each_reference():
    too_small = MediaInput(kind="image", data=b"not a picture", mime="image/png", name="r.png")
    req = GenerationRequest(mode="r2v", version="1.1", prompt="[Image 1] and [Image 3]",
                            reference_images=(MediaInput.from_url(URL, "image"),) * 2 + (too_small,))
    exc = refused(req)
    assert "reference_images[3]" in str(exc)
    # two pictures in the batch input, then image2 (image1 left empty): the third reference is image2's
    text = shown(words.REFERENCE2VIDEO, exc, images=torch.zeros(2, 8, 8, 3),
                 references={"image1": None, "image2": torch.zeros(1, 8, 8, 3)})
    assert "  - image2: " in text and "reference_images" not in text
    assert words.reference_labels(torch.zeros(1, 8, 8, 3), {"image10": torch.zeros(2, 8, 8, 3),
                                                            "image9": torch.zeros(8, 8, 3)}) == \
        ["images", "image9", "image10 #1", "image10 #2"]


def test_reference2video_names_the_inputs_when_there_are_too_many():
    req = GenerationRequest(mode="r2v", version="1.1", prompt="x",
                            reference_images=(MediaInput.from_url(URL, "image"),) * 12)
    text = shown(words.REFERENCE2VIDEO, refused(req))
    assert "  - images/image1..9: 12 given" in text


def test_video_edit_names_video_or_source_frames():
    exc = refused(GenerationRequest(mode="edit", version="1.0", prompt="restyle it"))
    assert "video: video edit needs a source video; connect video" in shown(words.VIDEO_EDIT, exc)
    bad = MediaInput(kind="video", data=b"not a video", mime="video/mp4", name="source.mp4")
    exc = refused(GenerationRequest(mode="edit", version="1.0", prompt="restyle it", source_video=bad))
    assert "  - source_frames: cannot be read as a video" in shown(words.VIDEO_EDIT, exc,
                                                                  source_frames=torch.zeros(4, 8, 8, 3))


def test_cost_estimate_names_its_widgets():
    exc = ConfigError("{field} is needed", field="source_video_duration_s")
    assert shown(words.COST_ESTIMATE, exc) == "source_seconds is needed"


def test_collect_job_names_the_provider_widget():
    assert shown(words.COLLECT_JOB, ConfigError("{p}: no key", p="provider")) == "provider: no key"


def test_a_sync_execute_stays_sync_and_is_reworded():
    @words.in_widget_words(words.TEXT2VIDEO)
    def execute(cls, **values):
        raise ConfigError("{f} refused", f="duration_s")
    assert not asyncio.iscoroutinefunction(execute)
    with pytest.raises(ConfigError, match="^duration refused$"):
        execute(object)
