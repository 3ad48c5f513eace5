"""The simulator renders a clip once per request: an identical job (another task, paid again) gets the same MP4
without a second render; anything that shapes the picture or sound makes a new one."""
import asyncio
import uuid

import pytest
from happyhorse.engine.request import GenerationRequest, MediaInput
from happyhorse.engine.runner import RunOptions
from happyhorse.simulator import core
from happyhorse.simulator.renders import clip_key
from happyhorse.simulator.video import ClipSpec
from tests.conftest import png_bytes

from .helpers import make_runner, stats


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-key-123")


def counts() -> tuple[int, int]:
    return core.RENDERS.renders, core.RENDERS.hits


async def test_identical_jobs_render_once_and_get_the_same_clip(sim, tmp_path):
    runner = make_runner(sim, tmp_path, "dashscope")
    req = GenerationRequest(mode="t2v", prompt=f"a horse {uuid.uuid4().hex}", duration_s=3, seed=5)
    renders, hits = counts()
    first = await runner.run(req, RunOptions(out_dir=str(tmp_path / "a"), force_new=True))
    again = await runner.run(req, RunOptions(out_dir=str(tmp_path / "b"), force_new=True))
    assert first.task_id != again.task_id and stats(sim)["submissions"] == {"dashscope": 2}
    assert counts() == (renders + 1, hits + 1)
    assert open(first.path, "rb").read() == open(again.path, "rb").read()

    for changed in (req.with_(seed=6), req.with_(prompt=req.prompt + "!"), req.with_(resolution="1080p")):
        await runner.run(changed, RunOptions(out_dir=str(tmp_path / "c"), force_new=True))
    assert counts() == (renders + 4, hits + 1)


async def test_identical_jobs_at_once_wait_for_one_render(sim, tmp_path):
    runner = make_runner(sim, tmp_path, "dashscope")
    req = GenerationRequest(mode="i2v", prompt=f"push in {uuid.uuid4().hex}", duration_s=3,
                            first_frame=MediaInput.image_bytes(png_bytes(640, 480), "first.png"))
    renders, hits = counts()
    results = await asyncio.gather(*(runner.run(req, RunOptions(out_dir=str(tmp_path / str(i)), force_new=True))
                                     for i in range(3)))
    assert len({r.task_id for r in results}) == 3
    assert counts() == (renders + 1, hits + 2)


def test_the_key_covers_every_input_and_the_source_by_its_bytes():
    spec = ClipSpec(width=1280, height=720, duration_s=3, prompt="p", mode="edit", source_video="/a/job1-src.mp4")
    same_bytes_elsewhere = ClipSpec(**{**spec.__dict__, "source_video": "/b/job2-src.mp4"})
    assert clip_key(spec, b"video-1") == clip_key(same_bytes_elsewhere, b"video-1") != clip_key(spec, b"video-2")
    variants = [{"width": 720, "height": 1280}, {"duration_s": 4}, {"fps": 30}, {"prompt": "q"}, {"mode": "t2v"},
                {"first_frame": b"x"}, {"reference_images": [b"a"]}, {"seed": 1}, {"watermark": True},
                {"keep_source_audio": True}, {"label": "other host"}]
    keys = {clip_key(ClipSpec(**{**spec.__dict__, **change}), b"video-1") for change in variants}
    assert len(keys) == len(variants) and clip_key(spec, b"video-1") not in keys
