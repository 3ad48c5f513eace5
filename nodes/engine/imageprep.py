"""The repairs a user can turn on when an input breaks the provider's limits (caps.image_limits /
caps.video_limits): `--fit` in the CLI, the fit_inputs option on the nodes (see fit_all).

Nothing here changes an input unless the matching fix is on, and then only an input that needs it; every change
comes back as a sentence to show the user. The checks themselves live in validation, which refuses what still
breaks a limit before anything is sent.
"""
from __future__ import annotations

import io
import math
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction

import av
from PIL import Image, ImageOps

from .capabilities import FIT_CHOICES, ImageLimits, ProviderCaps, VideoLimits
from .errors import ValidationError, Violation
from .media import MediaError, VideoInfo, inspect_image, probe_video
from .request import GenerationRequest, MediaInput

REFRAMES = ("off", "crop", "pad")
# A ratio this close to the target counts as on target: 1920x1081 needs no crop to 16:9.
RATIO_TOLERANCE = 0.01
LOSSY_QUALITIES = (92, 85, 75, 65, 50)
# Hosts use only the first 15 s of an edit source (providers.md section 0): a source over the length limit is
# cut to that part rather than refused.
USED_SECONDS = 15.0
# When a video is too choppy for the host, frames are repeated up to this rate (the rate HappyHorse outputs).
RAISED_FPS = 24
VIDEO_CRFS = (23, 28, 33, 38)


@dataclass(frozen=True)
class MediaFixes:
    """Opt-in repairs for file inputs that break a provider's limits; all off by default."""

    upscale: bool = False           # images: scale up so the short side reaches the provider's minimum
    reframe: str = "off"            # images: "crop" or "pad" to `ratio`, or into the allowed aspect range
    ratio: str | None = None        # "W:H" for reframe; None: reframe only an image outside the allowed range
    reencode: bool = False          # images: an accepted format within the byte limit (lossy quality steps)
    reencode_video: bool = False    # videos: MP4 (H.264/AAC) within the container, size, fps, length, byte limits

    def __post_init__(self) -> None:
        if self.reframe not in REFRAMES:
            raise ValueError(f"reframe must be one of {', '.join(REFRAMES)}, got {self.reframe!r}")
        if self.ratio is not None:
            parse_ratio(self.ratio)


def fit_all(reframe: str, ratio: str | None = None) -> MediaFixes:
    """Every repair on (`--fit` in the CLI, fit_inputs on the nodes): upscale an image below the minimum side,
    bring one of a refused shape into range by `reframe` ("crop": the centre kept, "pad": black bars; with a
    ratio, to that ratio), re-encode an image or a video that breaks a format, size, rate, length or byte limit.
    Inputs within every limit are left exactly as they are."""
    if reframe not in FIT_CHOICES[1:]:
        raise ValueError(f"fit is crop or pad, got {reframe!r}")
    return MediaFixes(upscale=True, reframe=reframe, ratio=ratio, reencode=True, reencode_video=True)


def with_fit_hint(exc: ValidationError, option: str, how: str) -> ValidationError:
    """A refusal the fixes could repair, with one more line naming the option the way the user sets it."""
    if not exc.fixable:
        return exc
    return ValidationError(exc.violations + [Violation(option, how)], provider=exc.provider)


def parse_ratio(text: str) -> float:
    try:
        w, h = (float(p) for p in text.split(":"))
        if w > 0 and h > 0:
            return w / h
    except ValueError:
        pass
    raise ValueError(f"a ratio is written W:H, like 16:9; got {text!r}")


# ------------------------------------------------------------------------------------------ a whole request


def apply_fixes(req: GenerationRequest, caps: ProviderCaps, fixes: MediaFixes) -> tuple[GenerationRequest, list[str]]:
    """req with the fixes that are on applied to its file inputs for caps' limits, and what was changed, one
    sentence per change ("first_frame: upscaled 200x150 -> 400x300 ..."). URL inputs are left alone: the
    provider fetches them as they are. Unreadable files are left for validation to report."""
    if fixes == MediaFixes():
        return req, []
    notes: list[str] = []
    lim = caps.image_limits

    def image(role: str, m: MediaInput | None, min_side: int, max_bytes: int) -> MediaInput | None:
        if m is None or m.data is None:
            return m
        try:
            data, changes = fit_image(m.data, role, min_side, lim, fixes, max_bytes)
        except MediaError:
            return m
        notes.extend(f"{role}: {c}" for c in changes)
        return MediaInput.image_bytes(data, name=_renamed(m.name or role, data)) if changes else m

    first = image("first_frame", req.first_frame, lim.first_frame_min_side, lim.max_bytes)
    # The same limits validation applies: video-edit references follow the edit page, not reference-to-video's.
    ref_side, ref_bytes = ((lim.edit_reference_min_side, lim.edit_reference_max_bytes) if req.mode == "edit"
                           else (lim.reference_min_side, lim.max_bytes))
    refs = tuple(image(f"reference_images[{i + 1}]", m, ref_side, ref_bytes) for i, m in enumerate(req.reference_images))
    video = req.source_video
    if fixes.reencode_video and video is not None and video.data is not None:
        try:
            data, changes = fit_video(video.data, "source_video", caps.video_limits)
        except MediaError:
            changes = []
        if changes:
            notes.extend(f"source_video: {c}" for c in changes)
            video = MediaInput(kind="video", data=data, mime="video/mp4",
                               name=os.path.splitext(video.name or "source")[0] + ".mp4")
    changed = dict(first_frame=first, reference_images=refs, source_video=video)
    if video is not req.source_video:
        changed["source_video_duration_s"] = None        # re-probed from the new file
    return req.with_(**changed), notes


def _renamed(name: str, data: bytes) -> str:
    fmt = inspect_image(data).format
    return os.path.splitext(name)[0] + (".jpg" if fmt == "JPEG" else "." + fmt.lower())


# ------------------------------------------------------------------------------------------ images


def fit_image(data: bytes, role: str, min_side: int, limits: ImageLimits, fixes: MediaFixes,
              max_bytes: int | None = None) -> tuple[bytes, list[str]]:
    """Apply the fixes that are on and needed: reframe, then upscale, then re-encode. Returns the (possibly
    unchanged) file and what was changed. Raises MediaError for an unreadable file, ValidationError when
    re-encoding cannot reach the byte limit."""
    info = inspect_image(data)
    img: Image.Image | None = None
    changes: list[str] = []

    target = _target_ratio(info.width, info.height, limits, fixes)
    if target is not None:
        img = _open(data)
        before = img.size
        img = _crop(img, target) if fixes.reframe == "crop" else _pad(img, target)
        goal = fixes.ratio or f"the allowed range 1:{limits.max_aspect:g}..{limits.max_aspect:g}:1"
        changes.append(f"{'cropped' if fixes.reframe == 'crop' else 'padded'} {_wxh(before)} -> {_wxh(img.size)} "
                       f"to {goal}")
    size = img.size if img is not None else (info.width, info.height)
    if fixes.upscale and min(size) < min_side:
        img = img or _open(data)
        scale = min_side / min(img.size)
        before = img.size
        img = img.resize((max(min_side, math.ceil(before[0] * scale)), max(min_side, math.ceil(before[1] * scale))),
                         Image.Resampling.LANCZOS)
        changes.append(f"upscaled {_wxh(before)} -> {_wxh(img.size)} to reach the {min_side} px minimum side")
    if img is not None:
        data = _save(img, info.format)

    max_bytes = limits.max_bytes if max_bytes is None else max_bytes
    if fixes.reencode and (info.format not in limits.formats or len(data) > max_bytes):
        img = img or _open(data)
        out, fmt, quality = _reencode(img, info.format, role, limits, max_bytes)
        how = fmt if quality is None else f"{fmt} quality {quality}"
        changes.append(f"re-encoded {info.format} {_mb(len(data))} -> {how} {_mb(len(out))} "
                       f"(accepted: {', '.join(limits.formats)}, at most {_mb(max_bytes)})")
        data = out
    return data, changes


def _target_ratio(width: int, height: int, limits: ImageLimits, fixes: MediaFixes) -> float | None:
    """The width/height to reframe to, or None when reframing is off or not needed."""
    if fixes.reframe == "off":
        return None
    current = width / height
    if fixes.ratio is not None:
        target = parse_ratio(fixes.ratio)
        return target if abs(current / target - 1) > RATIO_TOLERANCE else None
    if current > limits.max_aspect:
        return limits.max_aspect
    if current < 1 / limits.max_aspect:
        return 1 / limits.max_aspect
    return None


def _open(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        # Camera JPEGs store rotation in EXIF, which a re-encode drops: bake it into the pixels first.
        img = ImageOps.exif_transpose(img)
        if img.mode not in ("RGB", "RGBA", "L"):     # palettes and the like: padding needs real colours
            img = img.convert("RGBA" if "transparency" in img.info or "A" in img.getbands() else "RGB")
        return img.copy()


def _crop(img: Image.Image, ratio: float) -> Image.Image:
    """The centred largest part of img with this width/height."""
    w, h = img.size
    if w / h > ratio:
        new_w = max(1, round(h * ratio))
        left = (w - new_w) // 2
        return img.crop((left, 0, left + new_w, h))
    new_h = max(1, round(w / ratio))
    top = (h - new_h) // 2
    return img.crop((0, top, w, top + new_h))


def _pad(img: Image.Image, ratio: float) -> Image.Image:
    """img centred on black bars to this width/height; no pixel of it is lost or resampled."""
    w, h = img.size
    size = (w, max(h, round(w / ratio))) if w / h > ratio else (max(w, round(h * ratio)), h)
    canvas = Image.new(img.mode, size, (0, 0, 0, 0) if "A" in img.getbands() else 0)
    canvas.paste(img, ((size[0] - w) // 2, (size[1] - h) // 2))
    return canvas


def _save(img: Image.Image, fmt: str, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    if fmt in ("JPEG", "WEBP"):
        img = img if fmt == "WEBP" or img.mode in ("RGB", "L") else img.convert("RGB")
        img.save(buf, format=fmt, quality=quality)
    else:
        img.save(buf, format=fmt)
    return buf.getvalue()


def _reencode(img: Image.Image, fmt: str, role: str, limits: ImageLimits, max_bytes: int
              ) -> tuple[bytes, str, int | None]:
    """The first of: lossless PNG (only when the format itself is refused), then lossy steps, that fits."""
    lossy = next((f for f in ("JPEG", "WEBP") if f in limits.formats), None)
    tries: list[tuple[str, int | None]] = []
    if fmt not in limits.formats and "PNG" in limits.formats:
        tries.append(("PNG", None))
    if lossy is not None:
        tries.extend((lossy, q) for q in LOSSY_QUALITIES)
    out = b""
    for out_fmt, quality in tries:
        out = _save(img, out_fmt) if quality is None else _save(img, out_fmt, quality)
        if len(out) <= max_bytes:
            return out, out_fmt, quality
    last = f" (still {_mb(len(out))} at the lowest quality tried)" if out else ""
    raise ValidationError([Violation(role, f"cannot be re-encoded within {_mb(max_bytes)}{last}; "
                                           f"scale it down first")])


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


# ------------------------------------------------------------------------------------------ videos


@dataclass(frozen=True)
class _VideoPlan:
    width: int
    height: int
    fps: float
    seconds: float
    reasons: tuple[str, ...]


def fit_video(data: bytes, role: str, limits: VideoLimits) -> tuple[bytes, list[str]]:
    """Re-encode a video to MP4 (H.264 + AAC) when it breaks a limit that re-encoding can meet: container,
    frame size, frame rate, length over the limit (cut to the first 15 s the hosts use), bytes. Too short is not
    fixable and is left for validation. Returns the file (unchanged when nothing was needed) and what changed."""
    with tempfile.TemporaryDirectory(prefix="happyhorse-video-") as tmp:
        src, dst = os.path.join(tmp, "source"), os.path.join(tmp, "fixed.mp4")
        with open(src, "wb") as fh:
            fh.write(data)
        info = probe_video(src)
        plan = _plan_video(info, len(data), limits)
        if plan is None:
            return data, []
        for crf in VIDEO_CRFS:
            _transcode(src, dst, plan, crf)
            if os.path.getsize(dst) <= limits.max_bytes:
                break
        else:
            raise ValidationError([Violation(role, f"is still {_mb(os.path.getsize(dst))} after re-encoding at "
                                                   f"the lowest quality tried; the limit is {_mb(limits.max_bytes)}: "
                                                   f"trim it first")])
        with open(dst, "rb") as fh:
            fixed = fh.read()
    return fixed, [f"re-encoded as MP4 (H.264): {', '.join(plan.reasons)}"]


def _plan_video(info: VideoInfo, size_bytes: int, lim: VideoLimits) -> _VideoPlan | None:
    reasons: list[str] = []
    if info.container not in lim.formats:
        reasons.append(f"container {info.container} -> mp4")
    short, long_ = min(info.width, info.height), max(info.width, info.height)
    scale = 1.0
    if short < lim.min_short_side:
        scale = lim.min_short_side / short
    if long_ * scale > lim.max_long_side:
        scale = lim.max_long_side / long_
    width, height = _even(info.width * scale, up=scale > 1), _even(info.height * scale, up=scale > 1)
    if (width, height) != (info.width, info.height):
        reasons.append(f"{info.width}x{info.height} -> {width}x{height} (short side >= {lim.min_short_side}, "
                       f"long side <= {lim.max_long_side})")
    fps = info.fps
    if fps <= lim.min_fps:
        fps = float(RAISED_FPS)
        reasons.append(f"{info.fps:g} fps -> {RAISED_FPS} fps (frames repeated; the host needs more than "
                       f"{lim.min_fps:g})")
    seconds = info.duration_s
    if seconds > lim.max_duration_s:
        seconds = min(USED_SECONDS, lim.max_duration_s)
        reasons.append(f"cut from {info.duration_s:.1f} s to the first {seconds:g} s (hosts use only the first "
                       f"{USED_SECONDS:g} s; at most {lim.max_duration_s:g} s accepted)")
    if size_bytes > lim.max_bytes:
        reasons.append(f"{_mb(size_bytes)} -> within {_mb(lim.max_bytes)}")
    if not reasons:
        return None
    return _VideoPlan(width, height, fps, seconds, tuple(reasons))


def _even(value: float, up: bool) -> int:
    """H.264 needs even sizes; round away from the limit that made us scale."""
    return max(2, (math.ceil(value / 2) if up else math.floor(value / 2)) * 2)


def _transcode(src: str, dst: str, plan: _VideoPlan, crf: int) -> None:
    """One pass over the source: frames resampled to plan.fps (repeated or dropped by timestamp), scaled,
    cut at plan.seconds; the first audio track re-encoded to AAC at its own rate and layout."""
    rate = Fraction(plan.fps).limit_denominator(1001)
    with av.open(src) as inp, av.open(dst, "w", format="mp4", container_options={"movflags": "+faststart"}) as out:
        vin = inp.streams.video[0]
        ain = inp.streams.audio[0] if inp.streams.audio else None
        vout = out.add_stream("libx264", rate=rate, options={"preset": "veryfast", "crf": str(crf)})
        vout.width, vout.height, vout.pix_fmt = plan.width, plan.height, "yuv420p"
        vout.codec_context.time_base = 1 / rate
        aout = resampler = None
        if ain is not None:
            layout = ain.codec_context.layout.name
            aout = out.add_stream("aac", rate=ain.codec_context.sample_rate, layout=layout)
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=ain.codec_context.sample_rate)
        in_fps = float(vin.average_rate or vin.guessed_rate or plan.fps)
        written = samples = 0
        held: av.VideoFrame | None = None
        held_until = 0.0
        start: float | None = None

        def emit_until(t: float) -> None:
            """Repeat the held frame in every output slot that starts before t."""
            nonlocal written
            while held is not None and written / rate < t:
                held.pts = written
                out.mux(vout.encode(held))
                written += 1

        try:
            for packet in inp.demux(*(s for s in (vin, ain) if s is not None)):
                for frame in packet.decode():
                    if frame.time is None:
                        continue
                    if isinstance(frame, av.VideoFrame):
                        start = frame.time if start is None else start
                        t = frame.time - start
                        if t >= plan.seconds:
                            continue
                        emit_until(t)
                        held = frame.reformat(width=plan.width, height=plan.height, format="yuv420p")
                        held.time_base = vout.codec_context.time_base   # pts count output slots, not source ticks
                        held_until = min(plan.seconds, t + 1 / in_fps)
                    elif frame.time < plan.seconds:
                        for chunk in resampler.resample(frame):
                            chunk.pts = samples
                            samples += chunk.samples
                            out.mux(aout.encode(chunk))
            emit_until(held_until)
        except av.FFmpegError as exc:
            raise MediaError(f"the video could not be re-encoded: {exc}") from exc
        out.mux(vout.encode(None))
        if aout is not None:
            out.mux(aout.encode(None))
