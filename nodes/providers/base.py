"""The shape every provider adapter has: pure mappings between the canonical request and one host's API.

An adapter does no I/O. It builds HttpCalls and parses HttpReplies; the engine sends them. This keeps each
host a small declarative module that is easy to test against the simulator, line by line.
"""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from ..engine.capabilities import ProviderCaps
from ..engine.config import Secret
from ..engine.errors import ProviderError, SubmitUncertain, ValidationError, Violation
from ..engine.http import HttpCall, HttpReply, retry_after_seconds
from ..engine.pricing import PriceTable
from ..engine.protocol import JobState, JobStatus, ListedTask, MediaRef
from ..engine.redact import clip
from ..engine.request import GenerationRequest
from ..engine.uploads.store import StoreForm

__all__ = ["JobState", "JobStatus", "ListedTask", "MediaRef", "ProviderAdapter", "body_dict", "check_task_id",
           "require", "SUBMIT_OK", "task_id_path"]

# Any 2xx answer to the paid submit means the host took it: one that carries a task id is a job to record and
# follow, whatever the code (hosts document 200 or 202 and may send another); one without an id is uncertain.
SUBMIT_OK: tuple[int, ...] = tuple(range(200, 300))

# Every host's ids fit this (uuids, task_<hex>, ids with ':' or '.'), and nothing in it can leave a path segment.
_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")


class ProviderAdapter:
    name: str = ""
    caps: ProviderCaps
    prices: PriceTable
    default_base_url: str = ""
    submit_ok: tuple[int, ...] = SUBMIT_OK
    # Polling limits (engine/follow.PollPolicy): each adapter cites its host's documented figure or says [U].
    poll_min_s: float = 2.0             # never poll one job sooner than this after the last poll
    poll_max_s: float = 10.0            # never wait longer than this between polls
    poll_max_qps: float | None = None   # the host's documented per-account limit on status queries
    lists_tasks: bool = False           # the host documents a list of the account's tasks (list_tasks_call)

    # --- auth -------------------------------------------------------------------------------------
    def auth_headers(self, key: Secret) -> dict[str, str]:
        return {"Authorization": f"Bearer {key.reveal()}"}

    # --- the job protocol -------------------------------------------------------------------------
    def submit_call(self, req: GenerationRequest, media: list[MediaRef]) -> HttpCall:
        raise NotImplementedError

    def parse_submit(self, reply: HttpReply) -> str:
        """The task id of an accepted (2xx) submit; raises SubmitUncertain (via task_id) when there is none."""
        raise NotImplementedError

    def poll_call(self, task_id: str) -> HttpCall:
        raise NotImplementedError

    def parse_poll(self, reply: HttpReply) -> JobStatus:
        raise NotImplementedError

    def cancel_call(self, task_id: str) -> HttpCall | None:
        return None

    def map_error(self, reply: HttpReply) -> ProviderError:
        raise NotImplementedError

    # --- the provider's own temporary upload store (only when caps.has_temp_store) ------------------
    # engine/uploads/store.py drives these: fetch a policy with the provider's key, then POST a signed form to
    # the store host without it. An adapter without a store leaves them unimplemented.
    def upload_policy_call(self, req: GenerationRequest) -> HttpCall:
        """The call that asks for an upload policy (credentials for one or more uploads) for this request."""
        raise NotImplementedError

    def parse_upload_policy(self, reply: HttpReply) -> Any:
        """The policy, in whatever shape upload_form takes."""
        raise NotImplementedError

    def upload_form(self, policy: Any, filename: str) -> StoreForm:
        """The signed multipart form that uploads one file under that policy."""
        raise NotImplementedError

    def map_upload_error(self, reply: HttpReply) -> ProviderError:
        """The store host's refusal (its own error format, not the API's)."""
        raise NotImplementedError

    # --- the host's list of the account's tasks (only where its docs offer one) ------------------------
    # engine/reconcile.py uses it to find the job of a submit whose answer was lost, instead of guessing.
    def list_tasks_call(self, req: GenerationRequest, since: float, until: float, page: int) -> HttpCall | None:
        """The call listing this account's tasks for req's model created between since and until (epoch
        seconds), page 1, 2, ...; None when the host documents no task list."""
        return None

    def parse_task_list(self, reply: HttpReply) -> tuple[list[ListedTask], bool]:
        """(the tasks on this page, whether more pages follow)."""
        raise NotImplementedError

    def reply_status(self, reply: HttpReply) -> int:
        """The status the host means; a host with an in-body code reads it here so transports retry alike."""
        return reply.status

    def expected_seconds(self, req: GenerationRequest) -> float:
        """Typical wall time from submit to result; sets the polling rhythm and the ~remaining shown."""
        seconds = req.effective_duration_s or 10
        factor = 1.6 if req.resolution == "1080p" else 1.0
        return 45.0 + 9.0 * seconds * factor

    # --- helpers for subclasses -------------------------------------------------------------------
    def _error(self, reply: HttpReply, message: str, *, kind: str, code: str = "") -> ProviderError:
        return ProviderError(f"{self.caps.display_name}: {message}", kind=kind, status=reply.status, code=code,
                             retry_after=retry_after_seconds(reply.headers), provider=self.name)

    def _kind_for_status(self, status: int) -> str:
        if status in (401,):
            return "auth"
        if status == 402:
            return "credits"
        if status == 404:
            return "not_found"
        if status == 429:
            return "rate_limit"
        if status >= 500:
            return "server"
        return "bad_request"

    def auth_message(self) -> str:
        return (f"the API key was rejected; check {self.caps.key_env} (a key for another region or "
                f"account will not work)")


    def task_id(self, reply: HttpReply, value: Any, where: str) -> str:
        """`value` as the task id of a submit the host answered with 2xx. Without one the host may still have
        taken the (paid) job: that is an uncertain submit, recorded as such and never sent again."""
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and value.strip():
            try:
                return check_task_id(value)
            except ValidationError:
                # Taken, perhaps, but an id that could aim our polls elsewhere on the host cannot be followed.
                raise SubmitUncertain(
                    f"{self.caps.display_name} answered the submit with HTTP {reply.status} and a task id that is "
                    f"not one ({clip(value, 60)!r}: letters, digits and . _ : - only, at most 200), so the job "
                    f"may have been accepted and billed but cannot be followed. It was NOT sent again, to avoid "
                    f"paying twice. Check the provider's dashboard before retrying.") from None
        raise SubmitUncertain(
            f"{self.caps.display_name} answered the submit with HTTP {reply.status} but without a task id "
            f"({where}), so the job may have been accepted and billed. It was NOT sent again, to avoid paying "
            f"twice. Check `happyhorse jobs list` and the provider's dashboard before retrying.")


    def job_state(self, reply: HttpReply, raw: str, states: dict[str, str], what: str) -> JobState:
        """The engine's state for the host's status word. A word outside the documented table is UNRECOGNIZED
        (waited on, never an end); a reply without any status word is a changed API."""
        require(bool(raw), self, reply, f"no {what}")
        return JobState(states[raw]) if raw in states else JobState.UNRECOGNIZED


def body_dict(reply: HttpReply) -> dict[str, Any]:
    return reply.body if isinstance(reply.body, dict) else {}


def require(cond: bool, adapter: ProviderAdapter, reply: HttpReply, what: str) -> None:
    if not cond:
        raise ProviderError(f"{adapter.caps.display_name} answered in an unexpected shape ({what}); "
                            f"the API may have changed", kind="protocol", status=reply.status, provider=adapter.name)


def check_task_id(task_id: str) -> str:
    """A task id before it goes into a keyed request. It may come from a shared workflow's Collect node, so
    `../../x?y` must never aim the request at another path of the host."""
    if not _TASK_ID.fullmatch(task_id):
        raise ValidationError([Violation("task_id", f"{clip(task_id, 60)!r} is not a task id (letters, digits and "
                                                    f". _ : - only, at most 200); copy the generation node's "
                                                    f"task_id output or an id from `happyhorse jobs list`")])
    return task_id


def task_id_path(task_id: str) -> str:
    """check_task_id, then quoted as one URL path segment."""
    return quote(check_task_id(task_id), safe="")
