"""engine.media: images, probing, verification and bounded frame/audio decode, on clips made here with PyAV."""

from __future__ import annotations

import io
import os
import sys
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from happyhorse.engine.media import (
    FramePlan,
    MediaError,
    VideoInfo,
    decode_audio,
    decode_frames,
    decode_frames_into,
    decode_image,
    encode_image,
    estimate_frames_bytes,
    inspect_image,
    plan_frames,
    probe_video,
    verify_video,
)

FPS = 24
CLIP_W, CLIP_H, CLIP_FRAMES = 640, 360, 48
AUDIO_RATE, TONE_HZ, TONE_AMP = 44_100, 440.0, 0.5


_INDEX_BITS = 7


def _frame_pixels(index: int, checker: np.ndarray) -> np.ndarray:
    """Top half: the frame's index as 7 black/white stripes (bit 0 leftmost); bottom half: a moving
    checkerboard, so the codec has real work. Big on/off steps survive compression and scaling."""
    height, width = checker.shape[0] * 2, checker.shape[1]
    stripe = width // _INDEX_BITS
    grey = np.full((height, width), 40, dtype=np.uint8)
    for bit in range(_INDEX_BITS):
        if index >> bit & 1:
            grey[: height // 2, bit * stripe : (bit + 1) * stripe] = 215
    grey[height // 2 :] = np.roll(checker, index, axis=1)
    return np.repeat(grey[..., None], 3, axis=2)


def _checker(width: int, height: int) -> np.ndarray:
    ys, xs = np.mgrid[0 : height // 2, 0:width]
    return np.where((xs // 8 + ys // 8) % 2 == 0, 230, 25).astype(np.uint8)


def _write_clip(path: Path, width: int, height: int, frames: int, audio: bool = True, gop: int = 12) -> Path:
    with av.open(str(path), mode="w", format="mp4", container_options={"movflags": "+faststart"}) as out:
        video = out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "g": str(gop)})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=AUDIO_RATE, layout="mono") if audio else None
        checker = _checker(width, height)
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(_frame_pixels(index, checker), format="rgb24")
            frame.pts = index
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            total = frames * AUDIO_RATE // FPS
            t = np.arange(total, dtype=np.float64) / AUDIO_RATE
            tone = (TONE_AMP * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)[None, :]
            for start in range(0, total, 1024):
                chunk = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(tone[:, start : start + 1024]), format="fltp", layout="mono"
                )
                chunk.sample_rate, chunk.pts = AUDIO_RATE, start
                out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_clip(tmp_path_factory.mktemp("media") / "clip.mp4", CLIP_W, CLIP_H, CLIP_FRAMES)


def _index_of(frame: np.ndarray) -> int:
    """Read back the index drawn by _frame_pixels, from the middle of each stripe."""
    height, width = frame.shape[:2]
    stripe = width / _INDEX_BITS
    band = frame[height // 8 : height * 3 // 8].astype(np.float32)
    index = 0
    for bit in range(_INDEX_BITS):
        centre = (bit + 0.5) * stripe
        if band[:, int(centre - stripe / 4) : int(centre + stripe / 4)].mean() > 128:
            index |= 1 << bit
    return index


# ---------------------------------------------------------------------------------------------- images


def _picture(width: int = 64, height: int = 48) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([xs * 255 // width, ys * 255 // height, (xs + ys) % 256], axis=-1).astype(np.uint8)


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("BMP", "image/bmp")],
)
def test_inspect_image_reads_format_size_and_mime(fmt: str, mime: str) -> None:
    buf = io.BytesIO()
    Image.fromarray(_picture(64, 48)).save(buf, format=fmt)
    data = buf.getvalue()
    info = inspect_image(data)
    assert (info.format, info.width, info.height, info.mime) == (fmt, 64, 48, mime)
    assert info.size_bytes == len(data)


def test_inspect_image_rejects_garbage_and_unsupported_formats() -> None:
    with pytest.raises(MediaError, match="not a readable image"):
        inspect_image(b"definitely not an image" * 10)
    with pytest.raises(MediaError):
        inspect_image(b"")
    gif = io.BytesIO()
    Image.fromarray(_picture()).save(gif, format="GIF")
    with pytest.raises(MediaError, match="GIF"):
        inspect_image(gif.getvalue())


def test_png_roundtrip_is_exact_and_jpeg_is_close() -> None:
    pixels = _picture(80, 60)
    assert np.array_equal(decode_image(encode_image(pixels, "PNG")), pixels)
    jpeg = decode_image(encode_image(pixels, "jpg", quality=95))
    assert jpeg.shape == pixels.shape and jpeg.dtype == np.uint8
    assert np.abs(jpeg.astype(int) - pixels).mean() < 4
    assert inspect_image(encode_image(pixels, "WEBP")).format == "WEBP"


def test_encode_image_rounds_and_clips_floats() -> None:
    values = np.array([[[0.0, 0.5, 1.0], [-0.2, 1.7, 0.002]]], dtype=np.float32)
    decoded = decode_image(encode_image(values))
    assert decoded.tolist() == [[[0, 128, 255], [0, 255, 1]]]


def test_encode_image_rejects_wrong_shapes_and_formats() -> None:
    with pytest.raises(ValueError):
        encode_image(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError):
        encode_image(np.zeros((4, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError):
        encode_image(np.zeros((4, 4, 3), dtype=np.uint8), fmt="TIFF")


def test_decode_image_drops_alpha_and_rejects_garbage() -> None:
    rgba = np.zeros((10, 12, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    buf = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buf, format="PNG")
    decoded = decode_image(buf.getvalue())
    assert decoded.shape == (10, 12, 3) and decoded[0, 0].tolist() == [200, 0, 0]
    with pytest.raises(MediaError):
        decode_image(b"\x89PNG broken")


# ---------------------------------------------------------------------------------------------- probe


def test_probe_video_reports_the_clip(clip: Path) -> None:
    info = probe_video(clip)
    assert info.container == "mp4"
    assert (info.width, info.height) == (CLIP_W, CLIP_H)
    assert info.fps == pytest.approx(24.0)
    assert info.duration_s == pytest.approx(CLIP_FRAMES / FPS, abs=1 / FPS)
    assert info.frame_count == CLIP_FRAMES
    assert (info.video_codec, info.pix_fmt) == ("h264", "yuv420p")
    assert info.has_audio and info.audio_codec == "aac"
    assert (info.audio_sample_rate, info.audio_channels) == (AUDIO_RATE, 1)
    assert info.size_bytes == os.path.getsize(clip)


def test_probe_video_without_audio_and_on_non_video(tmp_path: Path) -> None:
    silent = _write_clip(tmp_path / "silent.mp4", 160, 120, 12, audio=False)
    info = probe_video(silent)
    assert not info.has_audio and info.audio_codec is None and info.audio_sample_rate is None
    assert decode_audio(silent) is None
    notes = tmp_path / "notes.mp4"
    notes.write_text("hello, this is not a video")
    with pytest.raises(MediaError):
        probe_video(notes)
    with pytest.raises(FileNotFoundError):
        probe_video(tmp_path / "missing.mp4")


# ---------------------------------------------------------------------------------------------- verify


def test_verify_video_accepts_an_intact_clip(clip: Path) -> None:
    assert verify_video(clip) == probe_video(clip)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_verify_video_rejects_truncated_downloads(clip: Path, tmp_path: Path, keep: float) -> None:
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * keep)])
    probe_video(cut)  # the header alone still looks fine: only decoding the tail shows the damage
    with pytest.raises(MediaError, match="truncated|corrupt"):
        verify_video(cut)


def test_verify_video_rejects_a_clip_cut_by_one_byte(clip: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[:-1])
    with pytest.raises(MediaError):
        verify_video(cut)


def test_verify_video_rejects_a_damaged_header_and_non_video(clip: Path, tmp_path: Path) -> None:
    data = bytearray(clip.read_bytes())
    data[:64] = bytes(64)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    with pytest.raises(MediaError):
        verify_video(broken)
    text = tmp_path / "page.mp4"
    text.write_bytes(b"<html>Access denied</html>")
    with pytest.raises(MediaError):
        verify_video(text)


@pytest.mark.parametrize("where", [0.3, 0.5, 0.7])
def test_verify_video_rejects_garbage_anywhere(clip: Path, tmp_path: Path, where: float) -> None:
    """A strict full decode: mid-clip damage that the decoder would conceal is an error, not a video."""
    data = bytearray(clip.read_bytes())
    at = int(len(data) * where)
    data[at : at + 2048] = np.random.default_rng(1).integers(0, 256, 2048, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    with pytest.raises(MediaError):
        verify_video(damaged)


def test_verify_video_accepts_a_long_gop_clip(tmp_path: Path) -> None:
    long_clip = _write_clip(tmp_path / "long.mp4", 1280, 720, 5 * FPS, gop=48)
    assert verify_video(long_clip).frame_count == 5 * FPS


# ---------------------------------------------------------------------------------------------- plans


def _info(width: int = 1920, height: int = 1080, frames: int = 120) -> VideoInfo:
    return VideoInfo(
        container="mp4", duration_s=frames / FPS, width=width, height=height, fps=FPS, frame_count=frames,
        video_codec="h264", pix_fmt="yuv420p", has_audio=False, audio_codec=None, audio_sample_rate=None,
        audio_channels=None, size_bytes=1,
    )


def test_plan_frames_defaults_keep_everything() -> None:
    plan = plan_frames(_info(frames=30))
    assert plan.indices == list(range(30))
    assert (plan.width, plan.height, plan.count) == (1920, 1080, 30)


def test_plan_frames_step_and_cap_spread_evenly_from_the_first_frame() -> None:
    assert plan_frames(_info(frames=10), frame_step=3).indices == [0, 3, 6, 9]
    capped = plan_frames(_info(frames=120), max_frames=10)
    assert capped.count == 10 and capped.indices[0] == 0
    assert set(np.diff(capped.indices)) == {12}  # even spacing across the whole clip
    both = plan_frames(_info(frames=120), frame_step=2, max_frames=7)
    assert both.count == 7 and both.indices[0] == 0
    assert all(i % 2 == 0 for i in both.indices)
    gaps = np.diff(both.indices)
    assert gaps.max() - gaps.min() <= 2 and both.indices[-1] >= 100
    assert plan_frames(_info(frames=5), max_frames=50).indices == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("size", "max_side", "expected"),
    [
        ((1920, 1080), 640, (640, 360)),
        ((1080, 1920), 640, (360, 640)),
        ((1920, 1080), 501, (500, 282)),
        ((1680, 720), 1000, (1000, 428)),
        ((1280, 720), 4000, (1280, 720)),
        ((1280, 720), 0, (1280, 720)),
    ],
)
def test_plan_frames_scales_to_max_side_with_even_dims(size: tuple[int, int], max_side: int, expected) -> None:
    plan = plan_frames(_info(*size), max_side=max_side)
    assert (plan.width, plan.height) == expected
    assert plan.width % 2 == 0 and plan.height % 2 == 0
    assert plan.width / plan.height == pytest.approx(size[0] / size[1], rel=0.01)


def test_plan_frames_rejects_bad_arguments() -> None:
    for kwargs in ({"frame_step": 0}, {"max_frames": -1}, {"max_side": -5}):
        with pytest.raises(ValueError):
            plan_frames(_info(), **kwargs)


def test_estimate_frames_bytes_counts_float32_rgb() -> None:
    plan = plan_frames(_info(1920, 1080, 360))
    assert estimate_frames_bytes(plan) == 360 * 1920 * 1080 * 3 * 4  # the ~9 GB a full decode would take


# ---------------------------------------------------------------------------------------------- decode


def test_decode_frames_into_fills_the_planned_frames(clip: Path) -> None:
    plan = plan_frames(probe_video(clip), max_frames=6, frame_step=2, max_side=320)
    assert (plan.width, plan.height) == (320, 180)
    out = np.full((plan.count, plan.height, plan.width, 3), -1.0, dtype=np.float32)
    assert decode_frames_into(clip, plan, out) == plan.count
    assert out.min() >= 0.0 and out.max() <= 1.0
    for slot, index in enumerate(plan.indices):
        assert _index_of(out[slot] * 255) == index
    as_uint8 = decode_frames(clip, plan)
    assert as_uint8.dtype == np.uint8 and as_uint8.shape == out.shape
    np.testing.assert_allclose(out, as_uint8 / np.float32(255), atol=1e-6)


def test_decode_frames_into_stops_where_the_file_ends(clip: Path) -> None:
    plan = FramePlan(indices=[0, 10, CLIP_FRAMES + 100], width=64, height=36, count=3)
    out = np.zeros((3, 36, 64, 3), dtype=np.float32)
    assert decode_frames_into(clip, plan, out) == 2
    assert _index_of(out[1] * 255) == 10
    assert not out[2].any()
    assert len(decode_frames(clip, plan)) == 2


def test_decode_frames_into_checks_the_output_array(clip: Path) -> None:
    plan = plan_frames(probe_video(clip), max_frames=2)
    with pytest.raises(ValueError):
        decode_frames_into(clip, plan, np.zeros((2, CLIP_H, CLIP_W, 3), dtype=np.float64))
    with pytest.raises(ValueError):
        decode_frames_into(clip, plan, np.zeros((3, CLIP_H, CLIP_W, 3), dtype=np.float32))


def test_decode_frames_into_never_holds_the_whole_clip(clip: Path) -> None:
    plan = plan_frames(probe_video(clip))
    clip_bytes = estimate_frames_bytes(plan)
    assert clip_bytes > 100_000_000  # 48 full-size float32 frames: big enough for a copy to show
    out = np.empty((plan.count, plan.height, plan.width, 3), dtype=np.float32)
    tracemalloc.start()
    try:
        written = decode_frames_into(clip, plan, out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert written == CLIP_FRAMES
    assert _index_of(out[-1] * 255) == CLIP_FRAMES - 1
    assert peak < clip_bytes / 20  # about one uint8 frame (0.7 MB), never a full-clip intermediate


def test_decode_audio_keeps_the_native_rate_and_channels(clip: Path) -> None:
    waveform, rate = decode_audio(clip)
    assert rate == AUDIO_RATE and waveform.dtype == np.float32 and waveform.shape[0] == 1
    assert waveform.shape[1] == pytest.approx(CLIP_FRAMES / FPS * AUDIO_RATE, abs=2048)
    assert np.abs(waveform).max() <= 1.0
    body = waveform[0, 4096:-4096]
    assert np.sqrt(np.mean(body**2)) == pytest.approx(TONE_AMP / np.sqrt(2), rel=0.05)


def test_decode_audio_can_convert_rate_and_channels(clip: Path) -> None:
    waveform, rate = decode_audio(clip, sample_rate=48_000, channels=2)
    assert rate == 48_000 and waveform.shape[0] == 2
    assert waveform.shape[1] == pytest.approx(CLIP_FRAMES / FPS * 48_000, abs=2048)
    np.testing.assert_allclose(waveform[0], waveform[1], atol=1e-5)


def _resident_pages(arr: np.ndarray) -> tuple[int, int]:
    """(resident, total) pages of arr's memory, asked of the kernel (mincore)."""
    import ctypes
    import mmap

    page = mmap.PAGESIZE
    start = -(-arr.ctypes.data // page) * page
    end = (arr.ctypes.data + arr.nbytes) // page * page
    pages = (end - start) // page
    vec = (ctypes.c_ubyte * pages)()
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.mincore(ctypes.c_void_p(start), ctypes.c_size_t(end - start), vec) == 0
    return sum(b & 1 for b in vec), pages


@pytest.mark.skipif(sys.platform != "linux", reason="madvise / mincore are Linux calls")
def test_frames_buffer_is_mapped_in_before_any_frame_is_decoded() -> None:
    # 5 s of 720p: 120 frames, 1.3 GB. Left to first touch, its pages would fault in during the decode, each
    # contending with the decoder threads (what made frames of a 1080p clip take several times the decoding).
    from happyhorse.engine.media import FramePlan, frames_buffer

    release = tuple(int(x) for x in os.uname().release.split(".")[:2] if x.isdigit())
    if release < (5, 14):
        pytest.skip(f"MADV_POPULATE_WRITE needs Linux 5.14+, this is {os.uname().release}")
    plan = FramePlan(indices=list(range(120)), width=1280, height=720, count=120)
    out = frames_buffer(plan)
    assert out.shape == (120, 720, 1280, 3) and out.dtype == np.float32
    resident, total = _resident_pages(out)
    assert resident == total, f"{resident} of {total} pages resident"
