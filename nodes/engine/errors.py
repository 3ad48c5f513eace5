"""Errors the user sees. Every message says what went wrong and what to do about it."""
from __future__ import annotations

from dataclasses import dataclass

from .fields import CANONICAL, Fix, Surface


class HappyHorseError(Exception):
    """Base class: the message is written for the person running the graph or the CLI."""

    def render(self, surface: Surface = CANONICAL) -> str:
        """The message in the surface's words (see fields.py); most errors name no field."""
        return str(self)


@dataclass(frozen=True)
class Violation:
    field: str                  # canonical: a GenerationRequest field, an upload role, or a run option
    message: str
    fix: Fix | None = None      # what to do, worded by the surface; appended to the message
    fixable: bool = False      # an input the opt-in fixes (--fit, fit_inputs; engine/imageprep.py) can repair

    def render(self, surface: Surface = CANONICAL) -> str:
        text = self.message + (f"; {surface.fix(self.fix, self.field)}" if self.fix else "")
        return f"{surface.name(self.field)}: {text}"

    def __str__(self) -> str:
        return self.render()


class ValidationError(HappyHorseError):
    """The request breaks one or more rules; raised before anything is sent or paid."""

    def __init__(self, violations: list[Violation], provider: str = ""):
        self.violations = list(violations)
        self.provider = provider
        super().__init__(self.render())

    def render(self, surface: Surface = CANONICAL) -> str:
        head = f"Request refused before sending ({self.provider})" if self.provider else "Request refused before sending"
        return head + ":\n" + "\n".join(f"  - {v.render(surface)}" for v in self.violations)

    @property
    def fixable(self) -> bool:
        """Some input breaks a limit the opt-in fixes can repair (and the message should say how to ask)."""
        return any(v.fixable for v in self.violations)


class ConfigError(HappyHorseError):
    """Missing or bad local configuration (API key, bucket, base URL).

    Keyword arguments name canonical fields for {placeholders} in the message, so each surface words them
    (`ConfigError("... cannot send the {role}", role="first_frame")` -> "the --image" in the CLI).
    """

    def __init__(self, message: str, **fields: str):
        self.template = message
        self.fields = fields
        super().__init__(self.render())

    def render(self, surface: Surface = CANONICAL) -> str:
        text = self.template           # only the named placeholders are filled: paths may hold braces
        for key, field_name in self.fields.items():
            text = text.replace("{" + key + "}", surface.name(field_name))
        return text


class ProviderError(HappyHorseError):
    """The provider answered with an error.

    kind is one of: auth, credits, rate_limit, bad_request, not_found, server, protocol.
    retry_after is seconds to wait (from Retry-After or a rate-limit reset header) when known.
    """

    def __init__(self, message: str, *, kind: str, status: int | None = None,
                 code: str = "", retry_after: float | None = None, provider: str = ""):
        self.kind = kind
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.provider = provider
        super().__init__(message)


class SubmitRefused(ProviderError):
    """The host refused the job before any existed there (it could not be reached, or it answered the upload or
    the submit with an error): nothing was created or billed. ledger_id: the attempt's record, if any."""

    ledger_id: str | None = None

    @classmethod
    def from_error(cls, exc: ProviderError, ledger_id: str | None = None) -> "SubmitRefused":
        refused = cls(str(exc), kind=exc.kind, status=exc.status, code=exc.code, retry_after=exc.retry_after,
                      provider=exc.provider)
        refused.ledger_id = ledger_id
        return refused


class JobFailed(HappyHorseError):
    """The provider ran the job and reported failure (usually not billed)."""

    def __init__(self, message: str, *, task_id: str, code: str = ""):
        self.task_id = task_id
        self.code = code
        super().__init__(message)


class JobCancelled(HappyHorseError):
    def __init__(self, message: str, *, task_id: str | None = None):
        self.task_id = task_id
        super().__init__(message)


class JobTimeout(HappyHorseError):
    def __init__(self, message: str, *, task_id: str):
        self.task_id = task_id
        super().__init__(message)


class SubmitUncertain(HappyHorseError):
    """The submit may or may not have reached the provider; it is NOT re-sent automatically."""


class DownloadError(HappyHorseError):
    """The result could not be downloaded or did not decode; nothing was handed on.

    permanent: trying the same download again cannot help (e.g. the result is over the size cap).
    """

    def __init__(self, message: str, *, permanent: bool = False):
        self.permanent = permanent
        super().__init__(message)


class VideoGone(HappyHorseError):
    """An identical earlier job's video is neither on disk any more nor obtainable from the provider."""


class BudgetExceeded(HappyHorseError):
    """A spending limit (max_usd, or the daily / monthly budget) would be exceeded; nothing was sent."""
