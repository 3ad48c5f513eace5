"""The simulator's clip renderer: real H.264 + AAC MP4s whose pictures visibly follow the request.

A clip must look like its request (prompt on screen, the first frame as frame 0, reference tiles, an edited
source) so a person or a test can tell the plumbing carried the right inputs, and it must render fast on a
2-core machine. Static layers (gradient canvas, text panels, tiles, watermark) are therefore made once;
each frame only copies, pastes small regions and encodes.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
from contextlib import ExitStack
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterator, Protocol

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..engine.media import MediaError, decode_audio, decode_image

AUDIO_RATE = 48_000
_AUDIO_FRAME = 1024  # AAC frame size: the encoder takes whole frames except the last
MODES = ("t2v", "i2v", "r2v", "edit")

_SHORT_SIDES = {"720p": 720, "1080p": 1080}
_RATIOS = {
    "16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1), "4:3": (4, 3), "3:4": (3, 4),
    "21:9": (21, 9), "9:21": (9, 21), "5:4": (5, 4), "4:5": (4, 5),
}


@dataclass
class ClipSpec:
    width: int
    height: int
    duration_s: float
    fps: int = 24
    prompt: str = ""
    mode: str = "t2v"
    first_frame: bytes | None = None
    reference_images: list[bytes] = field(default_factory=list)
    source_video: str | None = None
    seed: int = 0
    watermark: bool = False
    keep_source_audio: bool = False
    label: str = ""


# ---------------------------------------------------------------------------------------------- sizes


def _short_side(resolution: str) -> int:
    key = resolution.strip().lower()
    if key not in _SHORT_SIDES:
        raise ValueError(f"resolution must be 720p or 1080p, got {resolution!r}")
    return _SHORT_SIDES[key]


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def output_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """(width, height) for a t2v/r2v request: the short side is 720 or 1080, the ratio from the table."""
    short = _short_side(resolution)
    if aspect_ratio not in _RATIOS:
        raise ValueError(f"aspect_ratio must be one of {', '.join(_RATIOS)}, got {aspect_ratio!r}")
    across, down = _RATIOS[aspect_ratio]
    if across >= down:
        return short * across // down, short
    return short, short * down // across


def size_for_image(resolution: str, img_w: int, img_h: int) -> tuple[int, int]:
    """(width, height) that keeps an input's aspect (i2v first frame, edit source) at 720p/1080p, even dims."""
    if img_w <= 0 or img_h <= 0:
        raise ValueError(f"image size must be positive, got {img_w}x{img_h}")
    short = _short_side(resolution)
    if img_w >= img_h:
        return _even(short * img_w / img_h), short
    return short, _even(short * img_h / img_w)


# ---------------------------------------------------------------------------------------------- drawing


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _pixels(frame: av.VideoFrame) -> np.ndarray:
    """A writable [H,W,3] view of an rgb24 frame's plane, so each frame is drawn without an extra copy."""
    plane = frame.planes[0]
    return np.ndarray(
        (frame.height, frame.width, 3), dtype=np.uint8, buffer=plane, strides=(plane.line_size, 3, 1)
    )


@dataclass
class _Overlay:
    """An RGBA picture pasted at a fixed spot; Pillow's paste is about twice as fast as numpy blending."""

    image: Image.Image
    x: int
    y: int

    def apply(self, frame: np.ndarray, opacity: float = 1.0) -> None:
        if opacity <= 0.0:
            return
        mask = self.image if opacity >= 1.0 else self.image.getchannel("A").point(lambda a: round(a * opacity))
        _paste(frame, self.image, self.x, self.y, mask)


def _paste(frame: np.ndarray, image: Image.Image, x: int, y: int, mask: Image.Image | None) -> None:
    height, width = frame.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + image.width, width), min(y + image.height, height)
    if x0 >= x1 or y0 >= y1:
        return
    box = (x0 - x, y0 - y, x1 - x, y1 - y)
    if box != (0, 0, image.width, image.height):
        image = image.crop(box)
        mask = mask.crop(box) if mask is not None else None
    region = frame[y0:y1, x0:x1]
    canvas = Image.fromarray(region)
    canvas.paste(image, (0, 0), mask)
    region[...] = np.asarray(canvas)


def _wrap(text: str, font: ImageFont.FreeTypeFont, max_width: float, max_lines: int) -> list[str]:
    """Greedy word wrap by pixel width; overlong words are broken; overflow ends in '...'."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= max_width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = word
        while font.getlength(line) > max_width:
            cut = _fitting_chars(line, font, max_width)
            lines.append(line[:cut])
            line = line[cut:]
        if len(lines) > max_lines:
            break
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and font.getlength(last + "...") > max_width:
            last = last[:-1]
        lines[-1] = last + "..."
    return lines


def _fitting_chars(word: str, font: ImageFont.FreeTypeFont, max_width: float) -> int:
    cut = 1
    while cut < len(word) and font.getlength(word[: cut + 1]) <= max_width:
        cut += 1
    return cut


def _text_panel(lines: list[str], font: ImageFont.FreeTypeFont, width: int, pad: int) -> Image.Image:
    size = int(font.size)
    line_h = round(size * 1.25)
    panel = Image.new("RGBA", (width, line_h * len(lines) + 2 * pad), (0, 0, 0, 0))
    draw = ImageDraw.Draw(panel)
    draw.rounded_rectangle((0, 0, panel.width - 1, panel.height - 1), radius=pad, fill=(0, 0, 0, 150))
    for row, text in enumerate(lines):
        draw.text((pad, pad + row * line_h), text, font=font, fill=(255, 255, 255, 255))
    return panel


def _label_image(text: str, font: ImageFont.FreeTypeFont) -> Image.Image:
    pad = max(2, int(font.size) // 4)
    left, top, right, bottom = font.getbbox(text)
    image = Image.new("RGBA", (right + 2 * pad, bottom + 2 * pad), (0, 0, 0, 140))
    ImageDraw.Draw(image).text((pad, pad), text, font=font, fill=(235, 235, 235, 255))
    return image


def _watermark_image(font: ImageFont.FreeTypeFont) -> Image.Image:
    text = "HappyHorse"
    left, top, right, bottom = font.getbbox(text)
    shadow = max(1, int(font.size) // 12)
    image = Image.new("RGBA", (right + shadow + 2, bottom + shadow + 2), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.text((shadow + 1, shadow + 1), text, font=font, fill=(0, 0, 0, 160))
    draw.text((1, 1), text, font=font, fill=(255, 255, 255, 220))
    return image


def _cover(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale to cover width x height, then centre-crop: what a provider does with a first frame."""
    scale = max(width / image.width, height / image.height)
    scaled_w, scaled_h = max(width, round(image.width * scale)), max(height, round(image.height * scale))
    image = image.resize((scaled_w, scaled_h), Image.Resampling.LANCZOS)
    left, top = (scaled_w - width) // 2, (scaled_h - height) // 2
    return image.crop((left, top, left + width, top + height))


# ---------------------------------------------------------------------------------------------- scenes


class _Scene(Protocol):
    def draw(self, index: int, out: np.ndarray) -> None: ...


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big")


def _palette(seed: int, prompt: str) -> list[np.ndarray]:
    rng = np.random.default_rng([seed % 2**32, _stable_hash(prompt)])
    base_hue = rng.random()
    colors = []
    for offset in (0.0, 0.12 + 0.1 * rng.random(), 0.3 + 0.2 * rng.random()):
        saturation, value = 0.45 + 0.3 * rng.random(), 0.55 + 0.35 * rng.random()
        r, g, b = colorsys.hsv_to_rgb((base_hue + offset) % 1.0, saturation, value)
        colors.append(np.array([r, g, b], dtype=np.float32) * 255.0)
    return colors


class _GradientScene:
    """A seeded three-colour gradient with soft waves, panned slowly, plus a drifting glow."""

    def __init__(self, spec: ClipSpec) -> None:
        self.width, self.height, self.fps = spec.width, spec.height, spec.fps
        unit = min(spec.width, spec.height)
        self.pad = max(4, round(unit * 0.08))
        self.canvas = self._make_canvas(_palette(spec.seed, spec.prompt), spec.seed)
        self.glow = self._make_glow(max(8, round(unit * 0.2)))
        self.phase = (spec.seed % 360) * math.pi / 180

    def _make_canvas(self, colors: list[np.ndarray], seed: int) -> np.ndarray:
        height, width = self.height + self.pad, self.width + self.pad
        ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
        xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
        ripple = 0.07 * np.sin(2 * np.pi * (xs * 1.5 + ys * 0.8) + (seed % 7))
        position = np.clip(xs * 0.65 + ys * 0.35 + ripple, 0.0, 1.0)
        # A 256-entry colour ramp indexed per pixel is ~10x faster than blending full float images.
        steps = np.linspace(0.0, 1.0, 256, dtype=np.float32)[:, None]
        first, middle, last = colors
        ramp = np.where(
            steps < 0.5,
            first + (middle - first) * (steps * 2),
            middle + (last - middle) * (steps * 2 - 1),
        ).astype(np.uint8)
        return ramp[np.rint(position * 255).astype(np.uint8)]

    @staticmethod
    def _make_glow(radius: int) -> Image.Image:
        ys, xs = np.mgrid[-radius:radius, -radius:radius].astype(np.float32)
        falloff = np.clip(1.0 - np.hypot(xs, ys) / radius, 0.0, 1.0) ** 2
        rgba = np.empty((2 * radius, 2 * radius, 4), dtype=np.uint8)
        rgba[..., :3] = 255
        rgba[..., 3] = (falloff * 120).astype(np.uint8)
        return Image.fromarray(rgba, mode="RGBA")

    def draw(self, index: int, out: np.ndarray) -> None:
        t = index / self.fps
        half = self.pad / 2
        dx = round(half * (1 + math.sin(2 * math.pi * t / 7 + self.phase)))
        dy = round(half * (1 + math.sin(2 * math.pi * t / 5 + self.phase * 2)))
        out[...] = self.canvas[dy : dy + self.height, dx : dx + self.width]
        span_x, span_y = self.width - self.glow.width, self.height - self.glow.height
        gx = round(span_x * (0.5 + 0.4 * math.sin(2 * math.pi * t / 6 + self.phase)))
        gy = round(span_y * (0.5 + 0.4 * math.sin(2 * math.pi * t / 4.5 + self.phase)))
        _paste(out, self.glow, gx, gy, self.glow)


class _KenBurnsScene:
    """Frame 0 is the first frame image (cover + centre crop); then a slow zoom with a seeded drift."""

    ZOOM = 0.12

    def __init__(self, spec: ClipSpec, n_frames: int) -> None:
        assert spec.first_frame is not None
        picture = Image.fromarray(decode_image(spec.first_frame))
        self.base = np.asarray(_cover(picture, spec.width, spec.height))
        self.width, self.height = spec.width, spec.height
        self.last = max(1, n_frames - 1)
        rng = np.random.default_rng(spec.seed % 2**32)
        self.drift = rng.uniform(-0.6, 0.6, size=2)

    def draw(self, index: int, out: np.ndarray) -> None:
        progress = index / self.last
        zoom = 1.0 + self.ZOOM * (0.5 - 0.5 * math.cos(math.pi * progress))  # eased in and out
        crop_w, crop_h = round(self.width / zoom), round(self.height / zoom)
        if (crop_w, crop_h) == (self.width, self.height):
            out[...] = self.base
            return
        x0 = round((self.width - crop_w) * (0.5 + 0.5 * self.drift[0]))
        y0 = round((self.height - crop_h) * (0.5 + 0.5 * self.drift[1]))
        crop = np.ascontiguousarray(self.base[y0 : y0 + crop_h, x0 : x0 + crop_w])
        # swscale does crop-upscaling ~3x faster than Pillow; integer crop steps are invisible at this speed.
        scaled = av.VideoFrame.from_ndarray(crop, format="rgb24").reformat(
            width=self.width, height=self.height, format="rgb24"
        )
        out[...] = scaled.to_ndarray()


class _TilesScene:
    """The reference images as labelled tiles, in order, bobbing gently over the gradient."""

    def __init__(self, spec: ClipSpec, area: tuple[int, int, int, int]) -> None:
        self.background = _GradientScene(spec)
        self.fps = spec.fps
        left, top, right, bottom = area
        count = len(spec.reference_images)
        unit = min(spec.width, spec.height)
        self.gap = max(6, round(unit * 0.03))
        label_font = _font(max(10, round(unit / 36)))
        label_h = round(int(label_font.size) * 1.5)
        cols, side = self._layout(count, right - left, bottom - top, label_h)
        rows = math.ceil(count / cols)
        grid_w = cols * side + (cols - 1) * self.gap
        grid_h = rows * (side + label_h) + (rows - 1) * self.gap
        origin_x = left + (right - left - grid_w) // 2
        origin_y = top + (bottom - top - grid_h) // 2
        self.tiles: list[tuple[np.ndarray, int, int]] = []
        for number, data in enumerate(spec.reference_images, start=1):
            tile = self._make_tile(data, side, label_h, f"[Image {number}]", label_font)
            row, col = divmod(number - 1, cols)
            x = origin_x + col * (side + self.gap)
            y = origin_y + row * (side + label_h + self.gap)
            self.tiles.append((tile, x, y))

    def _layout(self, count: int, width: int, height: int, label_h: int) -> tuple[int, int]:
        """Columns and tile side that make the largest square tiles fit the area."""
        best = (1, 0)
        for cols in range(1, count + 1):
            rows = math.ceil(count / cols)
            side = min(
                (width - (cols + 1) * self.gap) // cols,
                (height - (rows + 1) * self.gap) // rows - label_h,
            )
            if side > best[1]:
                best = (cols, side)
        return best[0], max(8, best[1])

    @staticmethod
    def _make_tile(data: bytes, side: int, label_h: int, label: str, font: ImageFont.FreeTypeFont) -> np.ndarray:
        tile = Image.new("RGB", (side, side + label_h), (20, 20, 24))
        tile.paste(_cover(Image.fromarray(decode_image(data)), side, side), (0, 0))
        draw = ImageDraw.Draw(tile)
        draw.text((side // 2, side + label_h // 2), label, font=font, fill=(255, 255, 255), anchor="mm")
        return np.asarray(tile)

    def draw(self, index: int, out: np.ndarray) -> None:
        self.background.draw(index, out)
        t = index / self.fps
        amplitude = self.gap / 2 - 1  # stays inside the gap, so tiles never overlap
        height, width = out.shape[:2]
        for number, (tile, x, y) in enumerate(self.tiles):
            tx = x + round(amplitude * math.sin(2 * math.pi * t / 3 + number))
            ty = y + round(amplitude * math.cos(2 * math.pi * t / 4 + number * 0.7))
            tx, ty = min(max(tx, 0), width - tile.shape[1]), min(max(ty, 0), height - tile.shape[0])
            out[ty : ty + tile.shape[0], tx : tx + tile.shape[1]] = tile


class _EditScene:
    """The source video's frames, resized to the output and colour-inverted; the last frame holds if short."""

    def __init__(self, spec: ClipSpec, stack: ExitStack) -> None:
        assert spec.source_video is not None
        self.width, self.height, self.fps = spec.width, spec.height, spec.fps
        container = stack.enter_context(av.open(spec.source_video, mode="r"))
        if not container.streams.video:
            raise MediaError("the source video has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        self.frames: Iterator[av.VideoFrame] = container.decode(stream)
        first = next(self.frames, None)
        if first is None:
            raise MediaError("the source video has no decodable frame")
        self.start = first.time or 0.0
        self.current, self.upcoming = first, next(self.frames, None)
        self.pixels: np.ndarray | None = None

    def draw(self, index: int, out: np.ndarray) -> None:
        t = index / self.fps
        # Take the newest source frame shown at time t, so any source fps maps onto the output fps.
        while self.upcoming is not None and (self.upcoming.time or 0.0) - self.start <= t + 1e-6:
            self.current, self.upcoming = self.upcoming, next(self.frames, None)
            self.pixels = None
        if self.pixels is None:
            rgb = self.current.reformat(width=self.width, height=self.height, format="rgb24").to_ndarray()
            self.pixels = 255 - rgb
        out[...] = self.pixels


# ---------------------------------------------------------------------------------------------- audio


def _tone_track(seed: int, n_samples: int) -> np.ndarray:
    """A soft pentatonic melody from the seed: stereo float32 [2, n_samples]."""
    rng = np.random.default_rng(seed % 2**32)
    steps = np.array([0, 2, 4, 7, 9, 12, 14, 16])
    root = 196.0 * 2 ** (rng.integers(0, 12) / 12)
    note_len = int(AUDIO_RATE * rng.choice([0.25, 0.375, 0.5]))
    track = np.zeros((2, n_samples), dtype=np.float32)
    t = np.arange(note_len, dtype=np.float32) / AUDIO_RATE
    attack = np.minimum(1.0, t / 0.01)
    envelope = (attack * np.exp(-t / (note_len / AUDIO_RATE / 3))).astype(np.float32)
    for start in range(0, n_samples, note_len):
        freq = root * 2 ** (rng.choice(steps) / 12)
        phase = 2 * np.pi * freq * t
        note = (np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.1 * np.sin(3 * phase)) * envelope * 0.2
        pan = rng.uniform(0.25, 0.75)
        length = min(note_len, n_samples - start)
        track[0, start : start + length] = note[:length] * (1 - pan) * 2
        track[1, start : start + length] = note[:length] * pan * 2
    return track


def _soundtrack(spec: ClipSpec, n_samples: int) -> np.ndarray:
    if spec.mode == "edit" and spec.keep_source_audio and spec.source_video:
        decoded = decode_audio(spec.source_video, sample_rate=AUDIO_RATE, channels=2)
        if decoded is not None:
            samples = decoded[0][:, :n_samples]
            return np.pad(samples, ((0, 0), (0, n_samples - samples.shape[1])))
    return _tone_track(spec.seed, n_samples)


class _AudioWriter:
    """Feeds the AAC encoder in step with the video so the muxer can interleave without buffering."""

    def __init__(self, container: av.container.OutputContainer, samples: np.ndarray) -> None:
        self.container = container
        self.stream = container.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
        self.stream.codec_context.time_base = Fraction(1, AUDIO_RATE)
        self.samples = np.ascontiguousarray(samples, dtype=np.float32)
        self.position = 0

    def _encode(self, end: int) -> None:
        chunk = np.ascontiguousarray(self.samples[:, self.position : end])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self.position
        self.container.mux(self.stream.encode(frame))
        self.position = end

    def write_until(self, sample: int) -> None:
        while self.position + _AUDIO_FRAME <= min(sample, self.samples.shape[1]):
            self._encode(self.position + _AUDIO_FRAME)

    def finish(self) -> None:
        self.write_until(self.samples.shape[1])
        if self.position < self.samples.shape[1]:
            self._encode(self.samples.shape[1])
        self.container.mux(self.stream.encode(None))


# ---------------------------------------------------------------------------------------------- render


def _validate(spec: ClipSpec) -> None:
    if spec.width <= 0 or spec.height <= 0 or spec.width % 2 or spec.height % 2:
        raise ValueError(f"width and height must be positive and even for yuv420p, got {spec.width}x{spec.height}")
    if spec.fps <= 0 or spec.duration_s <= 0:
        raise ValueError("fps and duration_s must be positive")
    if spec.mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {spec.mode!r}")
    if spec.mode == "i2v" and not spec.first_frame:
        raise ValueError("i2v needs first_frame")
    if spec.mode == "r2v" and not spec.reference_images:
        raise ValueError("r2v needs at least one reference image")
    if spec.mode == "edit" and not spec.source_video:
        raise ValueError("edit needs source_video")


@dataclass
class _Layout:
    """Where the fixed overlays sit; scenes keep clear of them."""

    margin: int
    label_font: ImageFont.FreeTypeFont
    prompt: _Overlay | None
    watermark: _Overlay
    content_top: int
    content_bottom: int


def _layout(spec: ClipSpec) -> _Layout:
    unit = min(spec.width, spec.height)
    margin = max(4, round(unit * 0.025))
    label_font = _font(max(8, round(unit / 45)))
    mark = _watermark_image(_font(max(10, round(unit / 26))))
    watermark = _Overlay(mark, spec.width - margin - mark.width, spec.height - margin - mark.height)
    # The prompt sits above the watermark's corner, so switching the watermark changes only that corner.
    bottom = watermark.y - margin // 2
    prompt = None
    if spec.prompt.strip():
        font = _font(max(10, round(unit / 22)))
        pad = max(4, round(int(font.size) * 0.4))
        panel_w = spec.width - 2 * margin
        lines = _wrap(spec.prompt.strip(), font, panel_w - 2 * pad, max_lines=4)
        panel = _text_panel(lines, font, panel_w, pad)
        prompt = _Overlay(panel, margin, bottom - panel.height)
        bottom = prompt.y
    label_h = round(int(label_font.size) * 1.6)
    return _Layout(margin, label_font, prompt, watermark, margin + label_h + margin, bottom - margin)


def _scene(spec: ClipSpec, n_frames: int, layout: _Layout, stack: ExitStack) -> _Scene:
    if spec.mode == "i2v":
        return _KenBurnsScene(spec, n_frames)
    if spec.mode == "r2v":
        area = (layout.margin, layout.content_top, spec.width - layout.margin, layout.content_bottom)
        return _TilesScene(spec, area)
    if spec.mode == "edit":
        return _EditScene(spec, stack)
    return _GradientScene(spec)


def _draw_overlays(pixels: np.ndarray, spec: ClipSpec, layout: _Layout, index: int, n_frames: int) -> None:
    # i2v keeps frame 0 identical to the input image: its text fades in over the first half second.
    opacity = min(1.0, index / max(1, spec.fps // 2)) if spec.mode == "i2v" else 1.0
    if layout.prompt is not None:
        layout.prompt.apply(pixels, opacity)
    name = spec.label or "happyhorse simulator"
    label = f"{name} | {spec.mode} {spec.width}x{spec.height} seed {spec.seed} | frame {index + 1}/{n_frames}"
    _Overlay(_label_image(label, layout.label_font), layout.margin, layout.margin).apply(pixels, opacity)
    if spec.watermark:
        layout.watermark.apply(pixels)


def render_clip(spec: ClipSpec, out_path: str) -> None:
    """Render spec as an MP4 (H.264 yuv420p at spec.fps + AAC stereo 48 kHz) at out_path."""
    _validate(spec)
    n_frames = max(1, round(spec.duration_s * spec.fps))
    n_samples = round(n_frames * AUDIO_RATE / spec.fps)
    layout = _layout(spec)
    with ExitStack() as stack:
        scene = _scene(spec, n_frames, layout, stack)
        soundtrack = _soundtrack(spec, n_samples)
        container = stack.enter_context(
            av.open(out_path, mode="w", format="mp4", container_options={"movflags": "+faststart"})
        )
        # Short GOPs (1 s) keep seeking and tail verification of the result cheap.
        video = container.add_stream(
            "libx264", rate=spec.fps, options={"preset": "ultrafast", "g": str(spec.fps)}
        )
        video.width, video.height, video.pix_fmt = spec.width, spec.height, "yuv420p"
        video.codec_context.time_base = Fraction(1, spec.fps)
        audio = _AudioWriter(container, soundtrack)
        for index in range(n_frames):
            frame = av.VideoFrame(spec.width, spec.height, "rgb24")
            pixels = _pixels(frame)
            scene.draw(index, pixels)
            _draw_overlays(pixels, spec, layout, index, n_frames)
            frame.pts = index
            container.mux(video.encode(frame))
            audio.write_until(round((index + 1) * AUDIO_RATE / spec.fps))
        container.mux(video.encode(None))
        audio.finish()
