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
    # A status word the host's documents do not list (a new intermediate state, say). Only documented final
    # words end a job; this one is waited on like a running job, with the overall time limit as the backstop.
    UNRECOGNIZED = "unrecognized"

    @property
    def finished(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING, JobState.UNRECOGNIZED)


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
    prompt: str | None = None           # the prompt the host says the task was given, where it says so
    progress: float | None = None       # 0..1, where the host reports how far the job is (Apiframe)
    queued_s: float | None = None       # how long it waited before running, by the host's own clock (DashScope)

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", JobState(self.state))
        for name in ("raw_state", "error_code", "error_message"):
            object.__setattr__(self, name, clip(getattr(self, name)))


@dataclass(frozen=True)
class ListedTask:
    """One entry of a host's task list (used to find the job of a submit whose answer was lost)."""

    task_id: str
    created_at: float | None            # epoch seconds, when the host says
