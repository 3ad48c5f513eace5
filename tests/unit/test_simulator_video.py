"""simulator.video: rendered clips are real H.264 + AAC MP4s that visibly follow their request.

Every clip is read back with PyAV directly (not through engine.media), so the renderer and the probe
cannot hide each other's mistakes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageDraw

from happyhorse.engine.media import encode_image
from happyhorse.simulator.video import ClipSpec, output_size, render_clip, size_for_image

PROMPT = "A chestnut horse trots along a beach at golden hour"


@dataclass
class Clip:
    codec: str
    pix_fmt: str
    fps: float
    width: int
    height: int
    video_duration_s: float
    frames: list[np.ndarray]
    audio_codec: str
    audio_rate: int
    audio_channels: int
    audio: np.ndarray  # float32 [channels, samples]
    audio_duration_s: float


def _read(path: Path) -> Clip:
    with av.open(str(path)) as container:
        video, sound = container.streams.video[0], container.streams.audio[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video)]
        codec, pix_fmt = video.codec_context.name, video.codec_context.pix_fmt
        fps = float(video.average_rate)
        width, height = video.codec_context.width, video.codec_context.height
        video_duration_s = float(video.duration * video.time_base)
        audio_duration_s = float(sound.duration * sound.time_base)
        audio_codec, audio_rate = sound.codec_context.name, sound.codec_context.sample_rate
        audio_channels = sound.codec_context.channels
    with av.open(str(path)) as container:
        audio = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    return Clip(codec, pix_fmt, fps, width, height, video_duration_s, frames, audio_codec, audio_rate,
                audio_channels, audio, audio_duration_s)


def _render(tmp_path: Path, name: str, **fields) -> Clip:
    path = tmp_path / f"{name}.mp4"
    render_clip(ClipSpec(**fields), str(path))
    return _read(path)


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def _photo(width: int, height: int, hue: int = 0) -> bytes:
    """A smooth picture with a few shapes: distinctive, yet cheap for H.264 to keep close."""
    ys, xs = np.mgrid[0:height, 0:width]
    pixels = np.stack([(xs * 200 // width + hue) % 256, ys * 180 // height + 40, np.full_like(xs, 90)], axis=-1)
    image = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse((width // 4, height // 4, width // 2, height * 3 // 4), fill=(250, 240, 60))
    draw.rectangle((width * 5 // 8, height // 3, width * 7 // 8, height * 2 // 3), fill=(20, 30, 160))
    return encode_image(np.asarray(image), "PNG")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sim")


@pytest.fixture(scope="module")
def t2v(workdir: Path) -> Clip:
    return _render(workdir, "t2v", width=1280, height=720, duration_s=2.0, prompt=PROMPT, seed=11)


# ---------------------------------------------------------------------------------------------- sizes


def test_output_size_table() -> None:
    table = {
        "16:9": ((1280, 720), (1920, 1080)), "9:16": ((720, 1280), (1080, 1920)),
        "1:1": ((720, 720), (1080, 1080)), "4:3": ((960, 720), (1440, 1080)),
        "3:4": ((720, 960), (1080, 1440)), "21:9": ((1680, 720), (2520, 1080)),
        "9:21": ((720, 1680), (1080, 2520)), "5:4": ((900, 720), (1350, 1080)),
        "4:5": ((720, 900), (1080, 1350)),
    }
    for ratio, (at_720, at_1080) in table.items():
        assert output_size("720p", ratio) == at_720
        assert output_size("1080P", ratio) == at_1080
    with pytest.raises(ValueError):
        output_size("480p", "16:9")
    with pytest.raises(ValueError):
        output_size("720p", "2:1")


def test_size_for_image_keeps_the_aspect_with_even_sides() -> None:
    assert size_for_image("720p", 1000, 800) == (900, 720)
    assert size_for_image("1080p", 600, 1000) == (1080, 1800)
    assert size_for_image("720p", 500, 500) == (720, 720)
    width, height = size_for_image("720p", 1001, 777)
    assert height == 720 and width % 2 == 0 and abs(width / height - 1001 / 777) < 0.01
    with pytest.raises(ValueError):
        size_for_image("720p", 0, 100)


# ---------------------------------------------------------------------------------------------- format


def test_t2v_clip_is_h264_yuv420p_24fps_with_aac_stereo(t2v: Clip) -> None:
    assert (t2v.codec, t2v.pix_fmt, t2v.fps) == ("h264", "yuv420p", 24.0)
    assert (t2v.width, t2v.height) == (1280, 720)
    assert t2v.frames[0].shape == (720, 1280, 3)
    assert len(t2v.frames) == 48
    assert t2v.video_duration_s == pytest.approx(2.0, abs=1 / 24)
    assert (t2v.audio_codec, t2v.audio_rate, t2v.audio_channels) == ("aac", 48_000, 2)
    assert t2v.audio_duration_s == pytest.approx(2.0, abs=1 / 24)
    assert t2v.audio.shape[1] / 48_000 == pytest.approx(2.0, abs=1 / 24)
    assert float(np.sqrt(np.mean(t2v.audio**2))) > 0.02  # audible, not silence


def test_t2v_clip_moves(t2v: Clip) -> None:
    assert _diff(t2v.frames[0], t2v.frames[-1]) > 2


def test_clip_is_fast_start(workdir: Path, t2v: Clip) -> None:
    data = (workdir / "t2v.mp4").read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # playable while it downloads


@pytest.mark.parametrize("ratio", ["9:16", "21:9", "4:5"])
def test_exact_size_and_frame_count_for_other_ratios(tmp_path: Path, ratio: str) -> None:
    width, height = output_size("720p", ratio)
    clip = _render(tmp_path, "ratio", width=width, height=height, duration_s=1.32, prompt=PROMPT)
    assert (clip.width, clip.height) == (width, height)
    assert clip.frames[0].shape == (height, width, 3)
    assert len(clip.frames) == 32  # round(31.68), not int()
    assert clip.video_duration_s == pytest.approx(32 / 24, abs=1 / 24)
    assert clip.audio_duration_s == pytest.approx(32 / 24, abs=1 / 24)


def test_invalid_specs_are_refused(tmp_path: Path) -> None:
    out = str(tmp_path / "bad.mp4")
    for spec in (
        ClipSpec(width=641, height=360, duration_s=1),
        ClipSpec(width=640, height=360, duration_s=1, mode="sketch"),
        ClipSpec(width=640, height=360, duration_s=1, mode="i2v"),
        ClipSpec(width=640, height=360, duration_s=1, mode="r2v"),
        ClipSpec(width=640, height=360, duration_s=1, mode="edit"),
        ClipSpec(width=640, height=360, duration_s=0),
    ):
        with pytest.raises(ValueError):
            render_clip(spec, out)


# ---------------------------------------------------------------------------------------------- modes


def test_i2v_starts_on_the_first_frame_image(tmp_path: Path, t2v: Clip) -> None:
    photo = _photo(1200, 800)  # 3:2 into 4:3: cover, then centre-crop
    clip = _render(tmp_path, "i2v", width=960, height=720, duration_s=1.0, prompt=PROMPT, mode="i2v",
                   first_frame=photo, seed=11)
    source = Image.open(io.BytesIO(photo)).convert("RGB").resize((1080, 720), Image.LANCZOS)
    expected = np.asarray(source)[:, 60:1020]
    assert _diff(clip.frames[0], expected) < 4
    assert _diff(clip.frames[-1], expected) > 8  # then the camera zooms in
    t2v_like = _render(tmp_path, "t2v_same", width=960, height=720, duration_s=1.0, prompt=PROMPT, seed=11)
    assert _diff(t2v_like.frames[0], expected) > 30


def test_r2v_shows_the_reference_images(tmp_path: Path) -> None:
    warm = [_photo(400, 400, hue) for hue in (0, 60)]
    cool = [encode_image(np.full((400, 400, 3), (30, 60, 200), dtype=np.uint8)) for _ in range(2)]
    base = dict(width=640, height=360, duration_s=1.0, prompt=PROMPT, mode="r2v", seed=5)
    first = _render(tmp_path, "r2v_warm", reference_images=warm, **base)
    second = _render(tmp_path, "r2v_cool", reference_images=cool, **base)
    assert _diff(first.frames[0], second.frames[0]) > 10
    # The cool references show up as their own colour: a block of near-(30, 60, 200) pixels.
    blue = np.all(np.abs(second.frames[0].astype(int) - (30, 60, 200)) < 20, axis=-1)
    assert blue.mean() > 0.1
    assert _diff(first.frames[0], first.frames[-1]) > 1  # the tiles move


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1])


def test_edit_transforms_the_source_and_keeps_its_audio(workdir: Path, tmp_path: Path, t2v: Clip) -> None:
    source = str(workdir / "t2v.mp4")
    edit = _render(tmp_path, "edit", width=1280, height=720, duration_s=1.5, prompt="make it night",
                   mode="edit", source_video=source, keep_source_audio=True, seed=3)
    assert len(edit.frames) == 36
    # Compare a band clear of both clips' text overlays: transformed (not a copy) yet clearly derived.
    band = (slice(120, 400), slice(0, 1280))
    for index in (0, 20, 35):
        out, src = edit.frames[index][band], t2v.frames[index][band]
        assert _diff(out, src) > 30
        assert _correlation(out, src) < -0.8  # inverted colours: strongly anti-correlated
    kept = edit.audio[0, : edit.audio.shape[1]]
    original = t2v.audio[0, : kept.shape[0]]
    assert _correlation(kept[2048:-2048], original[2048:-2048]) > 0.9
    tones = _render(tmp_path, "edit_tones", width=320, height=180, duration_s=1.5, prompt="x", mode="edit",
                    source_video=source, keep_source_audio=False, seed=3)
    assert abs(_correlation(tones.audio[0, 2048:60000], original[2048:60000])) < 0.3


def test_edit_holds_the_last_source_frame_when_the_source_is_short(tmp_path: Path) -> None:
    source = tmp_path / "short.mp4"
    render_clip(ClipSpec(width=320, height=180, duration_s=0.5, prompt="", seed=2), str(source))
    edit = _render(tmp_path, "held", width=320, height=180, duration_s=1.0, mode="edit",
                   source_video=str(source), seed=2)
    assert len(edit.frames) == 24
    below_label = (slice(40, 180), slice(0, 320))
    held = [frame[below_label] for frame in edit.frames[12:]]
    assert max(_diff(held[0], frame) for frame in held[1:]) < 1.5


# ---------------------------------------------------------------------------------------------- inputs


def _first_frame(tmp_path: Path, name: str, **fields) -> np.ndarray:
    base = dict(width=640, height=360, duration_s=1.0, prompt=PROMPT, seed=1)
    return _render(tmp_path, name, **{**base, **fields}).frames[0]


def test_watermark_marks_only_the_bottom_right_corner(tmp_path: Path) -> None:
    plain = _first_frame(tmp_path, "plain")
    marked = _first_frame(tmp_path, "marked", watermark=True)
    corner = (slice(316, 360), slice(512, 640))  # the bottom-right 12% x 20%
    assert _diff(plain[corner], marked[corner]) > 4
    rest = np.ones(plain.shape[:2], dtype=bool)
    rest[corner] = False
    assert _diff(plain[rest], marked[rest]) < 0.5


def _white_share(frame: np.ndarray) -> float:
    """Share of near-white pixels in the lower half, where the prompt sits; the backgrounds are never white."""
    lower_half = frame[frame.shape[0] // 2 :]
    return float(np.all(lower_half > 225, axis=-1).mean())


def test_prompt_text_is_drawn(tmp_path: Path) -> None:
    with_text = _first_frame(tmp_path, "text")
    without = _first_frame(tmp_path, "no_text", prompt="")
    assert _white_share(with_text) > 0.002  # glyph pixels (~0.5% for this prompt)
    assert _white_share(without) < 0.0005
    other_prompt = _first_frame(tmp_path, "text2", prompt="A zebra in the snow")
    assert _diff(with_text, other_prompt) > 5


def test_seed_changes_picture_and_sound(tmp_path: Path) -> None:
    one = _render(tmp_path, "seed1", width=320, height=180, duration_s=1.0, prompt=PROMPT, seed=1)
    two = _render(tmp_path, "seed2", width=320, height=180, duration_s=1.0, prompt=PROMPT, seed=2)
    assert _diff(one.frames[0], two.frames[0]) > 10
    assert abs(_correlation(one.audio[0], two.audio[0])) < 0.5
