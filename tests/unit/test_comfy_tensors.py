"""Tensor <-> bytes conversions of the ComfyUI layer, and the bounded frame decode (needs torch, not ComfyUI)."""
from __future__ import annotations

import ast
import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from happyhorse.comfy import tensors
from happyhorse.comfy.tensors import (
    FrameCollector,
    FrameLimits,
    audio_from_video,
    batch_to_media,
    decode_video_frames,
    frames_to_mp4,
    image_to_media,
    pictures_to_media,
    plan_output_frames,
)
from happyhorse.engine.errors import HappyHorseError
from happyhorse.engine.media import MediaError, VideoInfo, decode_image, probe_video, verify_video

COMFY_DIR = Path(__file__).resolve().parents[2] / "nodes" / "comfy"
HOST_NEUTRAL = ("specs.py", "params.py", "estimates.py", "display.py", "tensors.py")


def ramp(batch: int, h: int, w: int, channels: int = 3) -> torch.Tensor:
    """A batch with distinct, known pixels: a horizontal ramp whose brightness differs per picture."""
    x = torch.linspace(0, 1, w).view(1, 1, w, 1).expand(batch, h, w, channels).clone()
    return x * torch.linspace(0.4, 1.0, batch).view(batch, 1, 1, 1)


def clip(tmp_path: Path, frames: int = 24, h: int = 96, w: int = 128, fps: float = 12.0) -> Path:
    """An MP4 whose frame i has uniform brightness i/(frames-1) (no audio track)."""
    levels = torch.linspace(0, 1, frames).view(frames, 1, 1, 1)
    path = tmp_path / "clip.mp4"
    path.write_bytes(frames_to_mp4(levels.expand(frames, h, w, 3).contiguous(), fps))
    return path


def test_host_neutral_modules_never_import_comfyui():
    banned = {"comfy_api", "comfy", "server", "folder_paths", "nodes", "comfy_execution"}
    for name in HOST_NEUTRAL:
        tree = ast.parse((COMFY_DIR / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not roots & banned, f"{name} imports {roots & banned}"
    assert "comfy_api" not in sys.modules


def test_image_round_trips_through_png():
    image = ramp(1, 40, 64)
    media = image_to_media(image, 0, "first")
    assert media.kind == "image" and media.mime == "image/png" and media.name == "first.png"
    back = decode_image(media.data).astype(np.float32) / 255.0
    assert back.shape == (40, 64, 3)
    assert np.abs(back - image[0].numpy()).max() <= 0.5 / 255 + 1e-6


def test_alpha_is_dropped_and_grey_expanded():
    rgba = torch.cat([ramp(1, 8, 8), torch.zeros(1, 8, 8, 1)], dim=-1)
    assert decode_image(image_to_media(rgba).data).shape == (8, 8, 3)
    grey = torch.full((1, 8, 8, 1), 0.5)
    assert (decode_image(image_to_media(grey).data) == 128).all()
    with pytest.raises(HappyHorseError, match="2 channels"):
        image_to_media(torch.zeros(1, 8, 8, 2))


def test_very_large_pictures_fall_back_to_jpeg(monkeypatch):
    monkeypatch.setattr(tensors, "PNG_MAX_BYTES", 1000)
    media = image_to_media(torch.rand(1, 64, 64, 3))
    assert media.mime == "image/jpeg" and media.name.endswith(".jpg")


def test_batch_becomes_ordered_media():
    batch = ramp(3, 16, 16)
    media = batch_to_media(batch, "ref")
    assert [m.name for m in media] == ["ref1.png", "ref2.png", "ref3.png"]
    brightness = [decode_image(m.data)[:, -1].mean() for m in media]
    assert brightness == sorted(brightness)            # batch order is kept: [Image 1], [Image 2], ...
    assert batch_to_media(None, "ref") == []


def test_references_go_as_full_colour_jpeg_and_first_frames_as_png():
    """A first frame's pixels become the video's first frame: lossless. A reference is only looked at."""
    picture = torch.rand(1, 90, 120, 3)
    first = image_to_media(picture, 0, "first")
    ref = image_to_media(picture, 0, "ref", lossless=False)
    assert first.mime == "image/png" and ref.mime == "image/jpeg" and ref.name == "ref.jpg"
    exact = np.clip(np.rint(picture[0].numpy() * 255.0), 0, 255).astype(np.uint8)
    assert (decode_image(first.data) == exact).all()
    with Image.open(io.BytesIO(ref.data)) as img:
        assert img.layer[0][1:3] == img.layer[1][1:3] == (1, 1), "chroma at full resolution (4:4:4)"
    smooth = ramp(1, 64, 64)
    error = np.abs(decode_image(image_to_media(smooth, lossless=False).data) / 255.0 - smooth[0].numpy())
    assert error.max() < 4 / 255


def test_many_pictures_encode_side_by_side_in_order():
    batch = ramp(6, 32, 48)
    pictures = [(batch, i, f"p{i}") for i in reversed(range(6))]
    media = pictures_to_media(pictures, lossless=True)
    assert [m.name for m in media] == [f"p{i}.png" for i in reversed(range(6))]
    for m, (_, i, _) in zip(media, pictures):
        assert (decode_image(m.data) == decode_image(image_to_media(batch, i).data)).all()


def test_frames_encode_to_h264_with_even_sides(tmp_path):
    path = clip(tmp_path, frames=10, h=49, w=65, fps=12.0)
    info = probe_video(path)
    assert (info.width, info.height, info.frame_count, info.video_codec) == (64, 48, 10, "h264")
    assert info.fps == pytest.approx(12.0) and not info.has_audio
    with pytest.raises(HappyHorseError):
        frames_to_mp4(torch.zeros(0, 8, 8, 3), 12)


def test_decode_all_frames_into_one_preallocated_tensor(tmp_path):
    path = clip(tmp_path)
    result = decode_video_frames(str(path), FrameLimits())
    frames = result.frames
    assert frames.dtype == torch.float32 and tuple(frames.shape) == (24, 96, 128, 3)
    assert result.source_frames == 24 and result.note == ""
    # One allocation of exactly the planned size: no full-clip intermediate copy.
    assert frames.untyped_storage().nbytes() == 24 * 96 * 128 * 3 * 4
    means = frames.mean(dim=(1, 2, 3))
    assert torch.allclose(means, torch.linspace(0, 1, 24), atol=0.03)


def test_step_count_and_size_limits(tmp_path):
    path = str(clip(tmp_path))
    stepped = decode_video_frames(path, FrameLimits(frame_step=4))
    assert stepped.plan.indices == [0, 4, 8, 12, 16, 20]
    assert torch.allclose(stepped.frames.mean(dim=(1, 2, 3)), torch.tensor([i / 23 for i in range(0, 24, 4)]),
                          atol=0.03)
    small = decode_video_frames(path, FrameLimits(max_frames=5, max_side=64))
    assert tuple(small.frames.shape) == (5, 48, 64, 3)


def test_memory_ceiling_thins_frames_keeping_first_and_last(tmp_path):
    path = str(clip(tmp_path))
    frame_bytes = 96 * 128 * 3 * 4
    limits = FrameLimits(max_mb=1)                       # 1 MiB holds 7 of these frames
    result = decode_video_frames(path, limits)
    keep = (1024 * 1024) // frame_bytes
    assert result.frames.shape[0] == keep == 7
    assert result.plan.indices[0] == 0 and result.plan.indices[-1] == 23
    assert result.frames.untyped_storage().nbytes() <= 1024 * 1024
    assert "7 of 24 frames" in result.note and "1 MB" in result.note


@pytest.mark.parametrize("limits", [FrameLimits(), FrameLimits(frame_step=4), FrameLimits(max_frames=5, max_side=64),
                                    FrameLimits(max_mb=1)])
def test_verification_pass_gives_the_same_frames_as_a_decode(tmp_path, limits):
    """Frames wanted from a download come out of verify_video's own decode: no second pass over the clip."""
    path = str(clip(tmp_path))
    collector = FrameCollector(limits)
    assert collector.frames() is None                    # nothing verified yet: the node would decode
    verify_video(path, collector)
    one_pass, decoded = collector.frames(), decode_video_frames(path, limits)
    assert one_pass.plan == decoded.plan and one_pass.note == decoded.note
    assert one_pass.source_frames == decoded.source_frames
    assert torch.equal(one_pass.frames, decoded.frames)


def test_a_failed_verification_attempt_leaves_no_frames_behind(tmp_path):
    path = clip(tmp_path)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    collector = FrameCollector(FrameLimits())
    with pytest.raises(MediaError):
        verify_video(str(cut), collector)
    verify_video(str(path), collector)                   # the retry starts afresh
    assert torch.equal(collector.frames().frames, decode_video_frames(str(path), FrameLimits()).frames)


def test_default_ceiling_on_a_15_second_1080p_clip():
    """The case from the design notes: 360 frames of 1080p would be ~9 GB of float32."""
    info = VideoInfo(container="mp4", duration_s=15.0, width=1920, height=1080, fps=24.0, frame_count=360,
                     video_codec="h264", pix_fmt="yuv420p", has_audio=True, audio_codec="aac",
                     audio_sample_rate=48000, audio_channels=2, size_bytes=0)
    plan, note = plan_output_frames(info, FrameLimits())
    assert plan.count * 1920 * 1080 * 12 <= 2048 * 1024 * 1024
    assert plan.count == 86 and plan.indices[0] == 0    # 2 GiB / 24.9 MB a frame and plan.indices[-1] == 359
    gaps = np.diff(plan.indices)
    assert gaps.max() - gaps.min() <= 1                  # evenly spread
    assert "86 of 360" in note
    whole, note = plan_output_frames(info, FrameLimits(max_side=480, max_mb=2048))
    assert whole.count == 360 and note == ""              # smaller frames: all of them fit


def test_audio_comes_from_the_file_itself(tmp_path):
    import av

    path = tmp_path / "tone.mp4"
    rate = 24000
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=12)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream("aac", rate=rate, layout="stereo")
        for i in range(12):
            for packet in video.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        t = np.arange(rate) / rate
        tone = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.1 * np.sin(2 * np.pi * 220 * t)]).astype(np.float32)
        for start in range(0, rate, 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start:start + 1024]), format="fltp",
                                               layout="stereo")
            frame.sample_rate, frame.pts = rate, start
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode(None):
            out.mux(packet)
    result = audio_from_video(str(path), 1.0)
    waveform = result["waveform"]
    assert result["sample_rate"] == rate and waveform.dtype == torch.float32
    assert waveform.shape[:2] == (1, 2) and abs(waveform.shape[2] - rate) < 2048
    left, right = waveform[0, 0, 4000:20000], waveform[0, 1, 4000:20000]
    assert left.abs().max() == pytest.approx(0.3, abs=0.05) and right.abs().max() == pytest.approx(0.1, abs=0.05)


def test_silent_clip_gets_silence_of_its_length(tmp_path):
    result = audio_from_video(str(clip(tmp_path)), 2.0)
    assert result["sample_rate"] == 44100
    assert tuple(result["waveform"].shape) == (1, 1, 88200) and not result["waveform"].any()
