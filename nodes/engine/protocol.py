"""Records exchanged between the engine and provider adapters (adapters import these, never the reverse)."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .redact import clip


class TextEnum(str, Enum):
    """An enum whose members are also their value as text: they compare, hash, format and serialise (JSON,
    SQLite) exactly like the plain word, so records and callers that hold the word keep working."""

    def __str__(self) -> str:
        return self.value


class JobState(TextEnum):
    """A job's state at the provider, in the engine's words; each adapter maps its host's words onto these."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    UNKNOWN = "unknown"          # the host does not know the task (expired, other account or region)

    @property
    def finished(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True)
class MediaRef:
    """A media input as the provider will receive it (public URL, data URI or provider store URL)."""

    role: str          # first_frame | reference_image | video
    url: str


@dataclass(frozen=True)
class JobStatus:
    """One poll's answer. The host's words (state, error code and message) are clipped: they reach error
    messages, logs and the ledger, and a host can send megabytes."""

    state: JobState                     # adapters may pass the word; it is checked and typed here
    raw_state: str = ""
    video_url: str | None = None
    error_code: str = ""
    error_message: str = ""
    billed_seconds: float | None = None
    cost_usd: float | None = None
    usage: dict | None = None           # the host's usage record as sent

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", JobState(self.state))
        for name in ("raw_state", "error_code", "error_message"):
            object.__setattr__(self, name, clip(getattr(self, name)))
