"""The canonical, provider-neutral generation request."""
from __future__ import annotations

import hashlib
import mimetypes
import os
from dataclasses import dataclass, replace
from typing import Literal

Mode = Literal["t2v", "i2v", "r2v", "edit"]
MODES: tuple[str, ...] = ("t2v", "i2v", "r2v", "edit")
VERSIONS: tuple[str, ...] = ("1.0", "1.1")
RESOLUTIONS: tuple[str, ...] = ("720p", "1080p")
MODE_TITLES = {"t2v": "text-to-video", "i2v": "image-to-video",
               "r2v": "reference-to-video", "edit": "video edit"}

_IMAGE_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "BMP": "image/bmp"}


@dataclass(frozen=True)
class MediaInput:
    """An input image or video: bytes we hold, or a URL the provider can fetch."""

    kind: Literal["image", "video"]
    data: bytes | None = None
    url: str | None = None
    mime: str = ""
    name: str = ""

    def __post_init__(self) -> None:
        if (self.data is None) == (self.url is None):
            raise ValueError("MediaInput needs exactly one of data or url")

    @classmethod
    def from_path(cls, path: str, kind: Literal["image", "video"]) -> "MediaInput":
        with open(path, "rb") as fh:
            data = fh.read()
        mime = mimetypes.guess_type(path)[0] or ("video/mp4" if kind == "video" else "image/png")
        return cls(kind=kind, data=data, mime=mime, name=os.path.basename(path))

    @classmethod
    def from_url(cls, url: str, kind: Literal["image", "video"]) -> "MediaInput":
        return cls(kind=kind, url=url, mime=mimetypes.guess_type(url.split("?")[0])[0] or "")

    @classmethod
    def image_bytes(cls, data: bytes, name: str = "image.png") -> "MediaInput":
        from .media import inspect_image  # lazy: Pillow only when images are used

        info = inspect_image(data)
        return cls(kind="image", data=data, mime=_IMAGE_MIME.get(info.format, info.mime), name=name)

    @property
    def sha256(self) -> str:
        payload = self.data if self.data is not None else (self.url or "").encode()
        return hashlib.sha256(payload).hexdigest()

    def describe(self) -> str:
        if self.url is not None:
            return self.url if len(self.url) < 80 else self.url[:77] + "..."
        return f"{self.name or self.kind} ({len(self.data or b'')} bytes)"


@dataclass(frozen=True)
class GenerationRequest:
    mode: str
    prompt: str = ""
    version: str = "1.1"
    first_frame: MediaInput | None = None
    reference_images: tuple[MediaInput, ...] = ()
    source_video: MediaInput | None = None
    resolution: str = "720p"
    aspect_ratio: str | None = None       # t2v / r2v: None means the neutral default 16:9; edit: None keeps the
                                          # source video's shape (nothing sent), where the host offers a ratio
    duration_s: int | None = None         # not for edit (output = min(input, 15 s))
    seed: int | None = None
    watermark: bool = False               # always sent explicitly: hosts disagree on the default
    audio_setting: str | None = None      # edit only: "auto" | "origin"
    source_video_duration_s: float | None = None  # known length of the edit source, for pricing

    def with_(self, **changes) -> "GenerationRequest":
        return replace(self, **changes)

    @property
    def effective_aspect_ratio(self) -> str | None:
        if self.mode in ("t2v", "r2v"):
            return self.aspect_ratio or "16:9"
        if self.mode == "edit":
            return self.aspect_ratio
        return None

    @property
    def effective_duration_s(self) -> int | None:
        if self.mode == "edit":
            return None
        return self.duration_s if self.duration_s is not None else 5

    def media(self) -> list[tuple[str, MediaInput]]:
        """All media in a stable order, with the canonical role of each."""
        items: list[tuple[str, MediaInput]] = []
        if self.first_frame is not None:
            items.append(("first_frame", self.first_frame))
        items.extend(("reference_image", m) for m in self.reference_images)
        if self.source_video is not None:
            items.append(("video", self.source_video))
        return items

    def fingerprint(self) -> str:
        """Stable hash of everything that defines the output (used to attach to or reuse a job)."""
        parts = [self.mode, self.version, self.prompt, self.resolution, str(self.effective_aspect_ratio),
                 str(self.effective_duration_s), str(self.seed), str(self.watermark), str(self.audio_setting)]
        parts.extend(f"{role}:{m.sha256}" for role, m in self.media())
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
