"""ComfyUI's native tensors <-> the bytes and files the engine works with.

Imports torch and numpy but not comfy_api, so CI (which has torch but no ComfyUI) can test it.
IMAGE is float32 [B,H,W,C] in 0..1; AUDIO is {"waveform": float32 [B,C,S], "sample_rate": int}.
"""
from __future__ import annotations

import dataclasses
import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import torch

from ..engine.errors import HappyHorseError
from ..engine.media import (
    FramePlan,
    MediaError,
    VideoInfo,
    decode_audio,
    decode_frames_into,
    encode_image,
    estimate_frames_bytes,
    frame_rgb,
    frames_buffer,
    plan_frames,
    probe_video,
    store_frame,
)
from ..engine.request import MediaInput

MB = 1024 * 1024
# PNG keeps every pixel; past this size JPEG keeps uploads (and the hosts' 10-20 MB limits) in check.
PNG_MAX_BYTES = 10 * MB
# zlib level 1: a 1080p picture encodes several times faster than at Pillow's default 6, about 15% larger.
PNG_FAST_LEVEL = 1
# References are only looked at by the model: JPEG at this quality with full colour resolution (4:4:4) is
# visually lossless, encodes in milliseconds and is a fraction of the PNG's size.
REFERENCE_JPEG_QUALITY = 95
FALLBACK_SAMPLE_RATE = 44100

log = logging.getLogger("happyhorse")


# --------------------------------------------------------------------------------------------- images in


def _picture(image: torch.Tensor, index: int) -> torch.Tensor:
    """One picture of an IMAGE batch as [H,W,3] (alpha dropped, grey expanded), still a tensor."""
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4:
        raise HappyHorseError(f"expected an IMAGE shaped [batch, height, width, channels], got {tuple(image.shape)}")
    pic = image[index].detach().to("cpu", torch.float32)
    channels = pic.shape[-1]
    if channels == 1:
        return pic.expand(-1, -1, 3)
    if channels >= 3:
        return pic[..., :3]
    raise HappyHorseError(f"an IMAGE with {channels} channels cannot be sent; use RGB")


def image_uint8(image: torch.Tensor, index: int = 0) -> np.ndarray:
    """One picture as uint8 [H,W,3], rounded half to even like np.rint (torch does it on every core)."""
    return _picture(image, index).mul(255.0).round_().clamp_(0, 255).to(torch.uint8).contiguous().numpy()


def image_to_media(image: torch.Tensor, index: int = 0, name: str = "image", *, lossless: bool = True) -> MediaInput:
    """Encode one picture for upload, by what the host does with it.

    lossless (a first frame: its pixels become the video's first frame): PNG at a fast level, JPEG only if the
    PNG would be very large. Otherwise (a reference the model only looks at): JPEG, quality 95, 4:4:4.
    """
    rgb = image_uint8(image, index)
    if lossless:
        data = encode_image(rgb, "PNG", compress_level=PNG_FAST_LEVEL)
        if len(data) <= PNG_MAX_BYTES:
            return MediaInput.image_bytes(data, name=f"{name}.png")
    data = encode_image(rgb, "JPEG", quality=REFERENCE_JPEG_QUALITY, subsampling=0)
    return MediaInput.image_bytes(data, name=f"{name}.jpg")


def pictures_to_media(pictures: list[tuple[torch.Tensor, int, str]], *, lossless: bool) -> list[MediaInput]:
    """(IMAGE, index, name) -> MediaInput, in order, encoded on all cores at once (Pillow frees the GIL)."""
    if len(pictures) <= 1:
        return [image_to_media(t, i, n, lossless=lossless) for t, i, n in pictures]
    with ThreadPoolExecutor(max_workers=min(len(pictures), os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda p: image_to_media(p[0], p[1], p[2], lossless=lossless), pictures))


def batch_pictures(image: torch.Tensor | None, prefix: str) -> list[tuple[torch.Tensor, int, str]]:
    """Each picture of an IMAGE batch, named prefix1, prefix2, ... in batch order."""
    if image is None:
        return []
    count = image.shape[0] if image.ndim == 4 else 1
    return [(image, i, f"{prefix}{i + 1}") for i in range(count)]


def batch_to_media(image: torch.Tensor | None, prefix: str, *, lossless: bool = True) -> list[MediaInput]:
    return pictures_to_media(batch_pictures(image, prefix), lossless=lossless)


# --------------------------------------------------------------------------------------------- frames in


def frames_to_mp4(frames: torch.Tensor, fps: float) -> bytes:
    """Encode IMAGE frames as an H.264 MP4 (yuv420p needs even sides: one edge row/column may be dropped)."""
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise HappyHorseError(f"expected IMAGE frames shaped [frames, height, width, channels], got "
                              f"{tuple(frames.shape)}")
    height, width = (frames.shape[1] // 2) * 2, (frames.shape[2] // 2) * 2
    if height < 2 or width < 2:
        raise HappyHorseError(f"frames of {frames.shape[2]}x{frames.shape[1]} are too small to encode")
    rate = Fraction(fps).limit_denominator(1001)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "17", "preset": "veryfast"}
        for i in range(frames.shape[0]):
            rgb = np.ascontiguousarray(image_uint8(frames, i)[:height, :width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------- frames out


@dataclass(frozen=True)
class FrameLimits:
    max_frames: int = 0          # 0 = no count limit
    frame_step: int = 1
    max_side: int = 0            # 0 = full size
    max_mb: int = 2048           # ceiling for the float32 tensor


@dataclass(frozen=True)
class FramesResult:
    frames: torch.Tensor
    plan: FramePlan
    source_frames: int
    note: str                    # set when the memory ceiling thinned the frames


def plan_output_frames(info: VideoInfo, limits: FrameLimits) -> tuple[FramePlan, str]:
    """The user's choices first, then the memory ceiling: frames are thinned evenly (first and last kept)
    rather than shrunk, because frame-level work (last-frame chaining, upscaling) wants full pictures."""
    plan = plan_frames(info, limits.max_frames, limits.frame_step, limits.max_side)
    budget = limits.max_mb * MB
    if plan.count == 0 or estimate_frames_bytes(plan) <= budget:
        return plan, ""
    per_frame = plan.width * plan.height * 3 * 4
    keep = max(1, budget // per_frame)
    indices = _spread(plan.indices, keep)
    note = (f"frames output: {len(indices)} of {plan.count} frames at {plan.width}x{plan.height} to stay under "
            f"{limits.max_mb} MB (raise frames_max_mb, or lower max_side for every frame at a smaller size)")
    return FramePlan(indices=indices, width=plan.width, height=plan.height, count=len(indices)), note


def _spread(indices: list[int], keep: int) -> list[int]:
    if keep >= len(indices):
        return list(indices)
    if keep == 1:
        return [indices[0]]
    last = len(indices) - 1
    return [indices[round(i * last / (keep - 1))] for i in range(keep)]


class FrameCollector:
    """A media.FrameSink: fills the frames output from the download's verification pass (one decode for both).

    frames() is None until a verification pass has run (e.g. an earlier identical job's file was reused).
    """

    def __init__(self, limits: FrameLimits):
        self.limits = limits
        self._result: FramesResult | None = None
        self._slots: dict[int, int] = {}
        self._out: np.ndarray | None = None
        self._written = 0

    def begin(self, info: VideoInfo) -> None:
        self._result = None            # a new attempt: drop the last one's tensor before allocating
        plan, note = plan_output_frames(info, self.limits)
        tensor = torch.from_numpy(frames_buffer(plan))
        self._result = FramesResult(frames=tensor, plan=plan, source_frames=info.frame_count, note=note)
        self._slots = {index: slot for slot, index in enumerate(plan.indices)}
        self._out, self._written = tensor.numpy(), 0

    def take(self, index: int, frame: av.VideoFrame) -> None:
        slot = self._slots.get(index)
        if slot is None or self._result is None:
            return
        store_frame(frame_rgb(frame, self._result.plan), self._out[slot])
        self._written = slot + 1

    def frames(self) -> FramesResult | None:
        if self._result is None:
            return None
        # The header's frame count can overstate the decodable frames by one or two.
        return dataclasses.replace(self._result, frames=self._result.frames[:self._written])


def decode_video_frames(path: str, limits: FrameLimits) -> FramesResult:
    """Decode the planned frames straight into one preallocated float32 tensor (no full-clip copy)."""
    info = probe_video(path)
    plan, note = plan_output_frames(info, limits)
    frames = torch.from_numpy(frames_buffer(plan))
    written = decode_frames_into(path, plan, frames.numpy())
    # The header's frame count can overstate the decodable frames by one or two.
    return FramesResult(frames=frames[:written], plan=plan, source_frames=info.frame_count, note=note)


# --------------------------------------------------------------------------------------------- audio out


def audio_from_video(path: str, duration_s: float) -> dict:
    """The MP4's own first audio track as AUDIO; silence of the clip's length if it has none, or if the track
    does not decode (the paid video stays usable; the log says why the audio is silent)."""
    try:
        decoded = decode_audio(path)
    except MediaError as exc:
        log.warning("HappyHorse: the result's audio track is unusable (%s); the AUDIO output is silence", exc)
        decoded = None
    if decoded is None:
        samples = max(1, round(duration_s * FALLBACK_SAMPLE_RATE))
        return {"waveform": torch.zeros((1, 1, samples), dtype=torch.float32), "sample_rate": FALLBACK_SAMPLE_RATE}
    waveform, rate = decoded
    return {"waveform": torch.from_numpy(np.ascontiguousarray(waveform)).unsqueeze(0), "sample_rate": int(rate)}
