"""Host-neutral media helpers: image bytes <-> arrays, MP4 probing, verification and bounded decode.

Everything here works on plain bytes, file paths and numpy arrays so the ComfyUI layer, the CLI and the
simulator can share it. Decoding is sequential and writes into caller-owned memory, because a whole
1080p clip as float32 frames is gigabytes (15 s at 24 fps is ~9 GB).
"""

from __future__ import annotations

import ctypes
import io
import mmap
import os
import sys
from dataclasses import dataclass
from typing import Iterator, Protocol

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

PathLike = str | os.PathLike[str]

SUPPORTED_IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
_FORMAT_ALIASES = {"JPG": "JPEG"}


class MediaError(ValueError):
    """Media that cannot be used: not an image, not a video, truncated or corrupt."""


# ---------------------------------------------------------------------------------------------- images


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    size_bytes: int
    mime: str


def inspect_image(data: bytes) -> ImageInfo:
    """Read format and size from the header only (Pillow opens lazily), so large uploads stay cheap."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or ""
            width, height = img.size
    except (UnidentifiedImageError, OSError) as exc:
        raise MediaError(
            f"not a readable image ({len(data)} bytes); use a PNG, JPEG, WEBP or BMP file"
        ) from exc
    if fmt not in SUPPORTED_IMAGE_FORMATS:
        raise MediaError(f"image format {fmt or 'unknown'} is not accepted; convert it to PNG or JPEG")
    return ImageInfo(
        format=fmt,
        width=width,
        height=height,
        size_bytes=len(data),
        mime=Image.MIME.get(fmt, f"image/{fmt.lower()}"),
    )


def _to_uint8_rgb(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB array shaped [H, W, 3], got {rgb.shape}")
    if rgb.dtype == np.uint8:
        return rgb
    if np.issubdtype(rgb.dtype, np.floating):
        return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    raise ValueError(f"expected uint8 or float 0..1 pixels, got dtype {rgb.dtype}")


def encode_image(rgb: np.ndarray, fmt: str = "PNG", quality: int = 95, **options: int) -> bytes:
    """Encode uint8 [H,W,3] or float 0..1 [H,W,3] pixels as PNG/JPEG/WEBP/BMP file bytes.

    options go to Pillow's encoder (compress_level for PNG, subsampling for JPEG). Pillow lets go of the GIL
    while it encodes, so pictures can be encoded on several threads at once.
    """
    fmt = _FORMAT_ALIASES.get(fmt.upper(), fmt.upper())
    if fmt not in SUPPORTED_IMAGE_FORMATS:
        raise ValueError(f"unsupported image format {fmt!r}; choose one of {', '.join(SUPPORTED_IMAGE_FORMATS)}")
    img = Image.fromarray(np.ascontiguousarray(_to_uint8_rgb(rgb)), mode="RGB")
    buf = io.BytesIO()
    if fmt in ("JPEG", "WEBP"):
        img.save(buf, format=fmt, quality=quality, **options)
    else:
        img.save(buf, format=fmt, **options)
    return buf.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    """Decode image file bytes to uint8 RGB [H,W,3] (alpha is dropped, palettes expanded)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise MediaError(f"could not decode image ({len(data)} bytes): {exc}") from exc


# ---------------------------------------------------------------------------------------------- video


@dataclass(frozen=True)
class VideoInfo:
    container: str
    duration_s: float
    width: int
    height: int
    fps: float
    frame_count: int
    video_codec: str
    pix_fmt: str
    has_audio: bool
    audio_codec: str | None
    audio_sample_rate: int | None
    audio_channels: int | None
    size_bytes: int


def _open_input(path: PathLike) -> av.container.InputContainer:
    try:
        return av.open(os.fspath(path), mode="r")
    except av.FFmpegError as exc:
        raise MediaError(
            f"could not open video {os.fspath(path)!r} (not a video, or cut before its index): {exc}"
        ) from exc


def _container_name(container: av.container.InputContainer) -> str:
    # FFmpeg's demuxer is called "mov,mp4,m4a,3gp,3g2,mj2"; the major brand tells MP4 from QuickTime.
    names = container.format.name.split(",")
    if "mp4" in names:
        brand = container.metadata.get("major_brand", "").strip()
        return "mov" if brand == "qt" else "mp4"
    return names[0]


def _video_duration(container: av.container.InputContainer, stream: av.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _describe(container: av.container.InputContainer, size_bytes: int) -> VideoInfo:
    if not container.streams.video:
        raise MediaError("the file has no video stream")
    video = container.streams.video[0]
    rate = video.average_rate or video.guessed_rate or video.base_rate
    fps = float(rate) if rate else 0.0
    duration = _video_duration(container, video)
    frame_count = video.frames if video.frames > 0 else int(round(duration * fps))
    audio = container.streams.audio[0] if container.streams.audio else None
    return VideoInfo(
        container=_container_name(container),
        duration_s=duration,
        width=video.codec_context.width,
        height=video.codec_context.height,
        fps=fps,
        frame_count=frame_count,
        video_codec=video.codec_context.name,
        pix_fmt=video.codec_context.pix_fmt or "",
        has_audio=audio is not None,
        audio_codec=audio.codec_context.name if audio else None,
        audio_sample_rate=audio.codec_context.sample_rate if audio else None,
        audio_channels=audio.codec_context.channels if audio else None,
        size_bytes=size_bytes,
    )


def probe_video(path: PathLike) -> VideoInfo:
    """Describe a video file from its headers without decoding pictures."""
    size_bytes = os.path.getsize(path)
    with _open_input(path) as container:
        return _describe(container, size_bytes)


def probe_video_bytes(data: bytes) -> VideoInfo:
    """probe_video for a video held in memory (an input about to be sent), without writing it to disk."""
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except av.FFmpegError as exc:
        raise MediaError(f"could not open the video (not a video, or cut before its index): {exc}") from exc
    with container:
        return _describe(container, len(data))


class FrameSink(Protocol):
    """Takes the pictures verify_video decodes anyway, so frames wanted from a download cost no second decode.

    begin() is called once the headers are read (again for every verification attempt: start afresh), then
    take() with each decoded picture in order. What a sink gathered counts only if verify_video returns.
    """

    def begin(self, info: VideoInfo) -> None: ...

    def take(self, index: int, frame: av.VideoFrame) -> None: ...


def verify_video(path: PathLike, sink: FrameSink | None = None) -> VideoInfo:
    """Prove a downloaded video is usable before it counts: decode every packet, strictly, to the end.

    A paid result is worth a full decode (about 0.1 s for 5 s of 720p here, a few seconds for 15 s of 1080p
    on two cores, against minutes of generation). FFmpeg's err_detect=explode turns damage the H.264 / AAC
    decoders would otherwise conceal into errors, so garbage anywhere in the file fails, as do truncation,
    a missing or damaged header or index, and files that are not video.
    Does not detect: damage that still decodes as valid bitstream (e.g. flipped bits inside residual data).
    sink, if given, receives every decoded picture of that same pass.
    """
    size_bytes = os.path.getsize(path)
    with _open_input(path) as container:
        info = _describe(container, size_bytes)
        if sink is not None:
            sink.begin(info)
        video = container.streams.video[0]
        if video.time_base is None:     # every real MP4 video track has one; without it no timing can be trusted
            raise MediaError("the video is corrupt: its video track states no time base")
        streams = [video, *container.streams.audio]
        for stream in streams:
            stream.codec_context.options = {"err_detect": "crccheck+bitstream+buffer+explode"}
        video.thread_type = "AUTO"
        frames = 0
        video_end_s = 0.0
        try:
            for packet in container.demux(streams):
                if packet.is_corrupt:
                    raise MediaError("the video is corrupt: a packet is flagged as damaged")
                for frame in packet.decode():
                    if packet.stream is video:
                        if sink is not None:
                            sink.take(frames, frame)
                        frames += 1
                        if frame.pts is not None:
                            video_end_s = float((frame.pts + (frame.duration or 0)) * video.time_base)
        except av.FFmpegError as exc:
            raise MediaError(f"the video is truncated or corrupt: {exc}") from exc
    if frames == 0:
        raise MediaError("the video stream has no decodable frame")
    # The header states the length even when the data is cut, so falling short of it shows truncation.
    if video.duration is not None and info.fps:
        stated_s = float(((video.start_time or 0) + video.duration) * video.time_base)
        if stated_s - video_end_s > 1.5 / info.fps:
            raise MediaError(f"the video is truncated: it stops {stated_s - video_end_s:.2f} s before its "
                             f"stated end")
    elif info.frame_count and frames < info.frame_count - 1:
        raise MediaError(f"the video is truncated: {frames} of {info.frame_count} frames decode")
    return info


# ---------------------------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class FramePlan:
    indices: list[int]
    width: int
    height: int
    count: int


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def _planned_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    long_side = max(width, height)
    if max_side <= 0 or long_side <= max_side:
        return width, height
    target_long = max(2, max_side - max_side % 2)  # round down so the long side never exceeds max_side
    scale = target_long / long_side
    if width >= height:
        return target_long, _even(height * scale)
    return _even(width * scale), target_long


def plan_frames(info: VideoInfo, max_frames: int = 0, frame_step: int = 1, max_side: int = 0) -> FramePlan:
    """Choose which source frames to keep and at what size.

    frame_step keeps every Nth frame; max_frames (0 = no cap) then thins those evenly over the whole clip,
    always keeping the first; max_side (0 = keep size) downscales so the long side fits, keeping aspect.
    """
    if max_frames < 0 or frame_step < 1 or max_side < 0:
        raise ValueError("max_frames and max_side must be >= 0 and frame_step >= 1")
    stepped = list(range(0, max(info.frame_count, 0), frame_step))
    if max_frames and len(stepped) > max_frames:
        stepped = [stepped[i * len(stepped) // max_frames] for i in range(max_frames)]
    width, height = _planned_size(info.width, info.height, max_side)
    return FramePlan(indices=stepped, width=width, height=height, count=len(stepped))


def frame_rgb(frame: av.VideoFrame, plan: FramePlan) -> np.ndarray:
    """One decoded picture as uint8 [H,W,3] at the planned size."""
    return frame.reformat(width=plan.width, height=plan.height, format="rgb24").to_ndarray()


# Linux madvise advice: huge pages (2 MiB), and "map it all in now" (5.14+). Python names the first only.
_MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", 14)
_MADV_POPULATE_WRITE = 23
_MAP_IN_MIN_BYTES = 64 << 20


def frames_buffer(plan: FramePlan) -> np.ndarray:
    """float32 [count,H,W,3] memory for the planned frames, mapped in before any decoding starts.

    A 5 s 1080p clip's frames take 3 GB. Left to first touch, each 4 KiB page faults in while FFmpeg's decoder
    threads map and unmap their own buffers on the same memory map, and in a VM each fault costs more: filling
    the tensor took several times the decoding itself. On Linux the buffer asks for huge pages (512x fewer
    faults) and has the kernel map it in at once; where either is refused (another OS, THP off, a kernel
    before 5.14) it stays a plain np.empty, filled as before. Never more memory than the frames themselves.
    """
    out = np.empty((plan.count, plan.height, plan.width, 3), dtype=np.float32)
    if sys.platform.startswith("linux") and out.nbytes >= _MAP_IN_MIN_BYTES:
        _map_in(out)
    return out


def _map_in(arr: np.ndarray) -> None:
    page = mmap.PAGESIZE
    start = -(-arr.ctypes.data // page) * page
    end = (arr.ctypes.data + arr.nbytes) // page * page
    if end <= start:
        return
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return
    addr, size = ctypes.c_void_p(start), ctypes.c_size_t(end - start)
    madvise(addr, size, _MADV_HUGEPAGE)           # advice: ignored when transparent huge pages are off
    madvise(addr, size, _MADV_POPULATE_WRITE)     # EINVAL before Linux 5.14: pages then fault in as written


def store_frame(rgb: np.ndarray, out: np.ndarray) -> None:
    """uint8 pixels into float32 0..1 memory the caller owns, with no float copy in between."""
    np.divide(rgb, np.float32(255.0), out=out)


def estimate_frames_bytes(plan: FramePlan) -> int:
    """Bytes the planned frames take as float32 RGB (ComfyUI's IMAGE layout)."""
    return plan.count * plan.height * plan.width * 3 * 4


def _iter_planned_frames(path: PathLike, plan: FramePlan) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (slot, uint8 [H,W,3]) for each planned frame, one frame in memory at a time."""
    if plan.count == 0:
        return
    wanted = iter(enumerate(plan.indices))
    slot, next_index = next(wanted)
    with _open_input(path) as container:
        if not container.streams.video:
            raise MediaError("the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index != next_index:
                    continue
                yield slot, frame_rgb(frame, plan)
                step = next(wanted, None)
                if step is None:
                    return
                slot, next_index = step
        except av.FFmpegError as exc:
            raise MediaError(f"the video does not decode: {exc}") from exc


def decode_frames_into(path: PathLike, plan: FramePlan, out: np.ndarray) -> int:
    """Decode the planned frames into out (float32 [count,H,W,3], 0..1); return how many were written.

    out may be a view of a torch tensor's memory; no full-clip intermediate is ever allocated.
    """
    expected = (plan.count, plan.height, plan.width, 3)
    if out.shape != expected or out.dtype != np.float32:
        raise ValueError(f"out must be float32 shaped {expected}, got {out.dtype} {out.shape}")
    written = 0
    for slot, rgb in _iter_planned_frames(path, plan):
        store_frame(rgb, out[slot])
        written = slot + 1
    return written


def decode_frames(path: PathLike, plan: FramePlan) -> np.ndarray:
    """Decode the planned frames as uint8 [n,H,W,3]; n is smaller than plan.count if the file runs short."""
    out = np.empty((plan.count, plan.height, plan.width, 3), dtype=np.uint8)
    written = 0
    for slot, rgb in _iter_planned_frames(path, plan):
        out[slot] = rgb
        written = slot + 1
    return out[:written]


# ---------------------------------------------------------------------------------------------- audio

# A result's audio is untrusted input: its header may declare any layout, rate and length. Decoded output is
# held to at most stereo, at most 48 kHz and at most the video's length plus this margin, so a 1 s clip with
# 300 s of 96 kHz 5.1 audio stays a few hundred KB instead of gigabytes.
MAX_AUDIO_CHANNELS = 2
MAX_AUDIO_RATE = 48_000
AUDIO_MARGIN_S = 0.5
# Used only when the video stream does not state its length (HappyHorse clips are at most 15 s).
AUDIO_FALLBACK_MAX_S = 60.0


def decode_audio(
    path: PathLike, sample_rate: int | None = None, channels: int | None = None, max_seconds: float | None = None
) -> tuple[np.ndarray, int] | None:
    """Decode the first audio track as float32 [channels, samples] in -1..1, or None if there is none.

    By default the file's own rate and channel count are kept up to 48 kHz and stereo; pass sample_rate /
    channels to convert. At most max_seconds are decoded (default: the video's length plus AUDIO_MARGIN_S).
    Every decoded frame goes through the resampler before it becomes an array: PyAV's to_ndarray reads past
    the end of a planar frame with 8 or more channels (a 7.1 track crashed the process), and the resampler's
    output never has more than two planes. A track that is malformed raises MediaError.
    """
    with _open_input(path) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        native_rate, native_channels = ctx.sample_rate or 0, ctx.channels or 0
        if native_rate <= 0 or native_channels <= 0:
            raise MediaError(f"the audio track is malformed: {native_channels} channels at {native_rate} Hz")
        rate = sample_rate or min(native_rate, MAX_AUDIO_RATE)
        n_channels = channels or min(native_channels, MAX_AUDIO_CHANNELS)
        if max_seconds is None:
            video = container.streams.video[0] if container.streams.video else None
            length = _video_duration(container, video) if video is not None else 0.0
            max_seconds = length + AUDIO_MARGIN_S if length > 0 else AUDIO_FALLBACK_MAX_S
        limit = max(1, int(np.ceil(max_seconds * rate)))
        resampler = av.AudioResampler(format="fltp", layout=_layout_for(n_channels), rate=rate)
        chunks: list[np.ndarray] = []
        total = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray()[:, : limit - total])
                    total += chunks[-1].shape[1]
                if total >= limit:
                    break
            else:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray()[:, : limit - total])
                    total += chunks[-1].shape[1]
        except (av.FFmpegError, ValueError) as exc:
            raise MediaError(f"the audio track does not decode: {exc}") from exc
    if not chunks:
        return np.zeros((n_channels, 0), dtype=np.float32), rate
    # AAC can overshoot full scale slightly after decoding; consumers expect -1..1.
    waveform = np.clip(np.concatenate(chunks, axis=1), -1.0, 1.0).astype(np.float32, copy=False)
    return waveform, rate


def _layout_for(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")  # FFmpeg's default layout for the count
