"""Every input check, one bad input each: a clear error, and nothing sent (no upload, no submit) to the simulator."""
import builtins
import dataclasses
import io

import av
import numpy as np
import pytest

from happyhorse.engine.capabilities import ImageLimits, VideoLimits
from happyhorse.engine.config import Secret
from happyhorse.engine.errors import ConfigError, ValidationError
from happyhorse.engine.ledger import Ledger
from happyhorse.engine.request import GenerationRequest, MediaInput
from happyhorse.engine.runner import JobRunner, RunOptions
from happyhorse.providers.dashscope import CAPS, DashScopeAdapter
from happyhorse.providers.registry import Endpoint, all_caps, resolve_endpoint
from tests.conftest import png_bytes
from tests.contract.helpers import stats

KEY = "sk-checks-key"


def write_video(w: int, h: int, fps: int, seconds: float, fmt: str = "mp4", audio: bool = True) -> bytes:
    """A small clip in memory: a moving bar, and a tone when audio is asked for."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        video = out.add_stream("libx264" if fmt == "mp4" else "mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        sound = out.add_stream("aac", rate=16000, layout="mono") if audio else None
        for i in range(int(round(fps * seconds))):
            pixels = np.zeros((h, w, 3), np.uint8)
            pixels[:, (i * 7) % w:(i * 7) % w + 8] = 255
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            total = int(16000 * seconds)
            tone = (0.3 * np.sin(np.arange(total) / 16000 * 2 * np.pi * 440)).astype(np.float32)[None, :]
            for start in range(0, total, 1024):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start:start + 1024]),
                                                   format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 16000, start
                out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    return buf.getvalue()


class SmallLimitsDashScope(DashScopeAdapter):
    """DashScope with byte limits small enough to break with test-sized files."""

    caps = dataclasses.replace(CAPS, image_limits=ImageLimits(max_bytes=1_000_000),
                               video_limits=VideoLimits(max_bytes=20_000))


def runner_for(sim, tmp_path, adapter=None):
    endpoint = (Endpoint(adapter, sim.base_url("dashscope"), Secret(KEY)) if adapter is not None
                else resolve_endpoint("dashscope", base_url=sim.base_url("dashscope")))
    return JobRunner(endpoint, ledger=Ledger(tmp_path / "l.sqlite3"), all_caps=all_caps())


def nothing_sent(sim):
    """No submit accepted, and no request of any kind reached a simulated host (no upload policy, no OSS POST)."""
    s = stats(sim)
    return s["submissions"] == {} and not any(s["requests"].values())


def image(w=640, h=480, fmt="PNG"):
    return MediaInput.image_bytes(png_bytes(w, h, fmt=fmt))


def video(data: bytes) -> MediaInput:
    return MediaInput(kind="video", data=data, mime="video/mp4", name="source.mp4")


def i2v(first):
    return GenerationRequest(mode="i2v", version="1.1", duration_s=3, first_frame=first)


def edit(source):
    return GenerationRequest(mode="edit", version="1.0", prompt="make it night", source_video=source)


GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00"
       b"\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

CASES = [
    ("image format", lambda: i2v(MediaInput(kind="image", data=GIF, mime="image/gif")), None,
     "first_frame: image format GIF is not accepted"),
    ("image min side", lambda: i2v(image(200, 150)), None, "each side must be at least 300 px: upscale it"),
    ("reference min side", lambda: GenerationRequest(mode="r2v", prompt="[Image 1]", aspect_ratio="1:1",
                                                     reference_images=(image(350, 350),)), None,
     "reference_images[1]: is 350x350; each side must be at least 400 px"),
    ("image aspect", lambda: i2v(image(1000, 300)), None, "aspect 1000:300 is too extreme"),
    ("image bytes", lambda: i2v(MediaInput.image_bytes(png_bytes(900, 900, fmt="BMP"))), SmallLimitsDashScope(),
     "first_frame: is 2.4 MB; the limit is 1 MB: re-encode as JPEG or scale it down"),
    ("image count", lambda: GenerationRequest(mode="r2v", prompt="many", aspect_ratio="1:1",
                                              reference_images=tuple(image(400, 400) for _ in range(10))), None,
     "reference_images: 10 given; DashScope takes 1-9"),
    ("video container", lambda: edit(video(write_video(320, 320, 10, 3.5, fmt="matroska"))), None,
     "container matroska is not accepted; use MP4 or MOV"),
    ("video duration", lambda: edit(video(write_video(320, 320, 10, 2))), None, "is 2.0 s long; it must be 3-60 s"),
    ("video size", lambda: edit(video(write_video(200, 150, 10, 3.5))), None,
     "is 200x150; the short side must be >= 320"),
    ("video fps", lambda: edit(video(write_video(320, 320, 5, 3.5))), None, "is 5.0 fps; it must be above 8 fps"),
    ("video bytes", lambda: edit(video(write_video(320, 320, 10, 3.5))), SmallLimitsDashScope(),
     "source_video: is 0 MB; the limit is 0 MB: trim or re-encode it"),
]


@pytest.mark.parametrize("name, make_req, adapter, expect", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("upload", ["auto", "provider-store"])
async def test_bad_input_is_refused_before_anything_is_sent(sim, tmp_path, monkeypatch, name, make_req, adapter,
                                                           expect, upload):
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
    with pytest.raises(ValidationError) as err:
        await runner_for(sim, tmp_path, adapter).run(make_req(), RunOptions(out_dir=str(tmp_path), upload=upload))
    assert expect in str(err.value), str(err.value)
    assert str(err.value).startswith("Request refused before sending")
    assert nothing_sent(sim)


async def test_url_only_host_without_bucket_sends_nothing(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("REAPI_API_KEY", "rk_live_checks")
    runner = JobRunner(resolve_endpoint("reapi", base_url=sim.base_url("reapi")), all_caps=all_caps())
    with pytest.raises(ConfigError) as err:
        await runner.run(i2v(image()), RunOptions(out_dir=str(tmp_path)))
    assert "reAPI only takes public URLs" in str(err.value) and "HAPPYHORSE_S3_BUCKET" in str(err.value)
    assert nothing_sent(sim)


@pytest.mark.parametrize("upload, expect", [
    ("s3", "upload 's3' was asked for the first_frame, but no bucket is configured"),
    ("carrier-pigeon", "use one of auto, data-uri, provider-store, s3"),
])
async def test_upload_choice_that_cannot_work_sends_nothing(sim, tmp_path, monkeypatch, upload, expect):
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
    with pytest.raises(ConfigError, match=expect):
        await runner_for(sim, tmp_path).run(i2v(image()), RunOptions(out_dir=str(tmp_path), upload=upload))
    assert nothing_sent(sim)


def block_boto3(monkeypatch):
    """Make `import boto3` fail as it does where boto3 is not installed."""
    real_import = builtins.__import__

    def importer(name, *args, **kwargs):
        if name.split(".")[0] in ("boto3", "botocore"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", importer)


async def test_bucket_without_boto3_sends_nothing(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
    monkeypatch.setenv("HAPPYHORSE_S3_BUCKET", "hh-bucket")
    block_boto3(monkeypatch)
    with pytest.raises(ConfigError, match="pip install boto3"):
        await runner_for(sim, tmp_path).run(i2v(image()), RunOptions(out_dir=str(tmp_path), upload="s3"))
    assert nothing_sent(sim)
