"""Never pay twice: before a submit, decide whether an identical request was already paid for.

Two places know about earlier identical requests:
- this event loop's in-flight claims (two identical nodes queued side by side: the second waits for the
  first's task id), and
- the ledger (an earlier run, another process, a crash): its newest record for the same fingerprint at the
  same provider and base URL.
The decision is typed (Reuse / Attach / None); the runner acts on it.
"""
from __future__ import annotations

import asyncio
import os
import time
import weakref
from dataclasses import dataclass

from .delivery import still_saved
from .errors import HappyHorseError, JobCancelled, SubmitUncertain, VideoGone
from .ledger import ATTACHABLE, JobRecord, Ledger, LedgerStatus
from .progress import Watch

RESULT_LIFETIME_S = 24 * 3600     # hosts keep task ids and result URLs about a day
# A 'submitting' record is touched at least this often while its submit is under way (transport timeout 60 s
# plus retries on refusal; submit.py touches it at every wait for a host at its limit).
SUBMIT_GRACE_S = 120.0

Key = tuple[str, str, str]        # (provider, base URL, request fingerprint)


@dataclass(frozen=True)
class Reuse:
    """An identical job finished and its video is on disk: hand it back, nothing is submitted."""

    record: JobRecord


@dataclass(frozen=True)
class Attach:
    """An identical job was paid for and can still be followed to its video."""

    task_id: str
    ledger_id: str | None


@dataclass(frozen=True)
class Refetch:
    """An identical job finished, but the file saved then is gone or changed: fetch its result again (free)."""

    record: JobRecord
    why: str                     # what became of the earlier file, in the user's words


Earlier = Reuse | Attach | Refetch | None


# Keyed by the loop object itself (weakly): ComfyUI may run each prompt in a new loop, and a dead loop's id can
# be reused by a new one, which must not inherit the old loop's claims.
_inflight: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Key, asyncio.Future]]" = \
    weakref.WeakKeyDictionary()


def _inflight_for_loop() -> dict[Key, asyncio.Future]:
    """Submissions under way in this event loop, by key -> future of their task id."""
    return _inflight.setdefault(asyncio.get_running_loop(), {})


async def find_earlier(key: Key, ledger: Ledger | None, display_name: str, watch: Watch, *,
                       free: bool = False) -> Earlier:
    """What to do instead of submitting, or None to submit. Raises SubmitUncertain when an identical submit
    may have been billed without our knowing its task id (the user must decide).

    None is only answered when no identical run has claimed the submit meanwhile: the ledger is read on a
    thread, and an identical run may claim it during that wait. The caller claims it right after, with no
    await in between.
    """
    while True:
        earlier = await _look(key, ledger, display_name, watch, free)
        if earlier is not None or key not in _inflight_for_loop():
            return earlier


async def _look(key: Key, ledger: Ledger | None, display_name: str, watch: Watch, free: bool) -> Earlier:
    inflight = _inflight_for_loop()
    if key in inflight:
        # The same request is being submitted in this process right now (e.g. two identical nodes).
        try:
            task_id = await watch.guard(asyncio.shield(inflight[key]))
        except HappyHorseError:
            task_id = None          # it failed before submitting: go on and submit this one
        if task_id is not None:
            return Attach(task_id, None)
    if ledger is None:
        return None
    provider, base_url, fingerprint = key
    prior = await asyncio.to_thread(ledger.find_fingerprint, fingerprint, provider, base_url)
    # An identical submit in flight right now (another node, another process): wait for its task id.
    while (prior is not None and prior.status == LedgerStatus.SUBMITTING
           and time.time() - prior.updated_at < SUBMIT_GRACE_S):
        await watch.sleep(0.5)
        prior = await asyncio.to_thread(ledger.get, prior.id)
    if prior is None:
        return None
    expired = time.time() - prior.created_at > RESULT_LIFETIME_S
    if prior.status == LedgerStatus.DONE:
        if await asyncio.to_thread(still_saved, prior.local_path, prior.size_bytes, prior.sha256):
            return Reuse(prior)
        why = saved_file_fate(prior)
        if expired or not prior.task_id:
            raise VideoGone(gone_message(prior, why, "the provider keeps results only about 24 h"))
        return Refetch(prior, why)
    if expired:
        return None
    if prior.task_id and prior.status in ATTACHABLE:
        return Attach(prior.task_id, prior.id)
    if prior.status in (LedgerStatus.UNCERTAIN, LedgerStatus.SUBMITTING):
        # 'submitting' this old means the process died during the POST: the host may have the job.
        raise SubmitUncertain(
            f"An identical request was sent at {time.strftime('%H:%M', time.localtime(prior.created_at))} but "
            f"its submit never got an answer (it broke off, or the program stopped), so it may be running "
            f"{'' if free else 'and billed '}at {display_name}. "
            f"Check the provider's dashboard; to submit anyway, force a new generation "
            f"(--new in the CLI, force_new on the node).")
    return None


def saved_file_fate(prior: JobRecord) -> str:
    """What became of a finished job's file, for the message."""
    path = prior.local_path or "(no path recorded)"
    if not prior.local_path or not os.path.isabs(prior.local_path) or prior.sha256 is None:
        return f"its file ({path}) was recorded before sizes and checksums were kept, so it cannot be trusted"
    if not os.path.isfile(prior.local_path):
        return f"its file {path} was deleted or moved"
    return f"its file {path} was changed since (the size or checksum differs)"


def gone_message(prior: JobRecord, why: str, reason: str) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(prior.created_at))
    return (f"An identical request was made on {when} (task {prior.task_id or '?'}), but {why}, and its result "
            f"cannot be fetched again: {reason}. Nothing was submitted or billed. To make a new video (billed "
            f"again), force a new generation (--new in the CLI, force_new on the node).")


class Claim:
    """This run is about to submit `key`: identical runs in this loop wait for its task id instead.

    Use as `with Claim(key) as claim: ... claim.resolve(task_id)`. Leaving without a task id tells the
    waiters to submit for themselves.
    """

    def __init__(self, key: Key):
        self.key = key
        self.future: asyncio.Future = asyncio.get_running_loop().create_future()

    def __enter__(self) -> "Claim":
        _inflight_for_loop().setdefault(self.key, self.future)
        return self

    def resolve(self, task_id: str) -> None:
        self.future.set_result(task_id)

    def __exit__(self, *exc) -> None:
        inflight = _inflight_for_loop()
        if inflight.get(self.key) is self.future:
            del inflight[self.key]
        if not self.future.done():
            # Fetching the exception here marks it retrieved, so asyncio does not warn when nobody was waiting.
            self.future.set_exception(JobCancelled("the identical request stopped before submitting"))
            self.future.exception()
