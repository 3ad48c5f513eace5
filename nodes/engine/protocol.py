"""Records exchanged between the engine and provider adapters (adapters import these, never the reverse)."""
from __future__ import annotations

from dataclasses import dataclass

CANONICAL_STATES = ("queued", "running", "succeeded", "failed", "canceled", "unknown")


@dataclass(frozen=True)
class MediaRef:
    """A media input as the provider will receive it (public URL, data URI or provider store URL)."""

    role: str          # first_frame | reference_image | video
    url: str


@dataclass(frozen=True)
class JobStatus:
    state: str                          # one of CANONICAL_STATES
    raw_state: str = ""
    video_url: str | None = None
    error_code: str = ""
    error_message: str = ""
    progress: float | None = None       # 0..1 when the host reports it
    billed_seconds: float | None = None
    cost_usd: float | None = None
    usage: dict | None = None
