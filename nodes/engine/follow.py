"""Follow a submitted job at the provider until it finishes: the polling rhythm, the time limits, and what a
cancel does to a job the provider already has.

Returns the finished JobStatus (succeeded, with a video URL) or raises the typed error the user sees:
JobFailed, JobCancelled, JobTimeout, or ProviderError (the host does not know the task).
Only a documented final status word ends the wait. A word the host's documents do not list (UNRECOGNIZED) is
waited on like a running job - logged once per word, shown in the progress line, never written to the ledger
as a state - and the running-time limit is the backstop, after which the job stays collectable.
"""
from __future__ import annotations

import asyncio
import logging
import time
from enum import Enum

import aiohttp

from .errors import JobCancelled, JobFailed, JobTimeout, ProviderError
from .http import Transport, is_loopback
from .later import Later
from .ledger import LedgerEntry, LedgerStatus
from .progress import Phase, Watch
from .protocol import JobState, JobStatus

log = logging.getLogger("happyhorse.runner")


def next_poll_delay(elapsed: float, expected: float, min_s: float, max_s: float) -> float:
    """Sparse while the job cannot be done yet, dense around the expected finish, then easing off."""
    remaining = expected - elapsed
    delay = remaining / 3 if remaining > 0 else min_s + (elapsed - expected) * 0.1
    return max(min_s, min(max_s, delay))


def poll_bounds(adapter, base_url: str) -> tuple[float, float]:
    """(min, max) seconds between polls. A host on this machine (the simulator, a local proxy) costs nothing
    to poll: keep it snappy."""
    if is_loopback(base_url):
        return 0.2, 1.0
    return adapter.poll_min_s, adapter.poll_max_s


class CancelOutcome(Enum):
    """What stopping a run did to its job at the provider."""

    CANCELLED = "cancelled at the provider too"
    LEFT_RUNNING = "it was left running at the provider"                     # a collect only stops waiting
    NO_CANCEL_API = "its API has no cancel, so it may still run"
    REFUSED = "the provider refused to cancel it (it had already started), so it may finish"

    def told(self, later: Later) -> str:
        """In words true for the host: nothing is billed on the simulator."""
        if self is CancelOutcome.CANCELLED:
            return self.value + ("" if later.free else " (not billed)")
        return later.billed(self.value) if self in (CancelOutcome.NO_CANCEL_API, CancelOutcome.REFUSED) \
            else self.value


class Follower:
    """Polls one task. cancel_job=False (a collect) only stops waiting when cancelled: the job may belong to
    another run or another machine."""

    def __init__(self, adapter, transport: Transport, task_id: str, watch: Watch, entry: LedgerEntry, *,
                 timeout_s: float, queue_timeout_s: float | None, bounds: tuple[float, float] | None,
                 later: Later, cancel_job: bool = True):
        self.adapter = adapter
        self.transport = transport
        self.task_id = task_id
        self.watch = watch
        self.entry = entry
        self.timeout_s = timeout_s
        self.queue_timeout_s = queue_timeout_s
        self.bounds = bounds or poll_bounds(adapter, transport.base_url)
        self.later = later
        self.cancel_job = cancel_job
        self.state: JobState | None = None        # the last state the host reported
        self._unlisted: set[str] = set()          # undocumented status words already logged

    @property
    def name(self) -> str:
        return self.adapter.caps.display_name

    async def until_finished(self, expected: float) -> JobStatus:
        started = time.monotonic()
        running_since: float | None = None
        while True:
            if self.watch.cancelled():
                await self.cancel()
            reply = await self.watch.guard(self.transport.call(self.adapter.poll_call(self.task_id)),
                                           on_cancel=self.cancel)
            status = self.adapter.parse_poll(reply)
            await self._record(status)
            if status.state.finished:
                return await self._finished(status)
            if status.state == JobState.UNRECOGNIZED:
                self.watch.update(Phase.RUNNING, detail=f"{self.name} says '{status.raw_state}', a status its "
                                                        f"documents do not list; still waiting")
            else:
                self.watch.update(Phase.QUEUED if status.state == JobState.QUEUED else Phase.RUNNING)
            now = time.monotonic()
            if status.state in (JobState.RUNNING, JobState.UNRECOGNIZED) and running_since is None:
                running_since = now
            if running_since is not None and now - running_since > self.timeout_s:
                await self.entry.mark(LedgerStatus.TIMED_OUT)
                raise JobTimeout(f"Task {self.task_id} is still running after {self.timeout_s:.0f} s. It was not "
                                 f"cancelled. {self.later.collect(self.task_id)}", task_id=self.task_id)
            if (running_since is None and self.queue_timeout_s is not None
                    and now - started > self.queue_timeout_s):
                await self.entry.mark(LedgerStatus.TIMED_OUT)
                raise JobTimeout(f"Task {self.task_id} is still queued after {self.queue_timeout_s:.0f} s; it was "
                                 f"not cancelled. {self.later.collect(self.task_id)}", task_id=self.task_id)
            delay = next_poll_delay(self.watch.elapsed(), expected, *self.bounds)
            await self.watch.sleep(delay, on_cancel=self.cancel)

    async def _record(self, status: JobStatus) -> None:
        if status.state == JobState.UNRECOGNIZED:
            # Not a state to record: the ledger keeps the last documented one, which stays attachable.
            if status.raw_state not in self._unlisted:
                self._unlisted.add(status.raw_state)
                log.warning("task %s: %s answered status %r, which its documents do not list; treated as still "
                            "running", self.task_id, self.name, status.raw_state)
            return
        if status.state != self.state:
            log.info("task %s: %s", self.task_id, status.raw_state or status.state)
            await self.entry.mark(LedgerStatus.of(status.state))
            self.state = status.state

    async def _finished(self, status: JobStatus) -> JobStatus:
        """The succeeded status, or the error for any other final state."""
        task_id = self.task_id
        if status.state == JobState.SUCCEEDED:
            if not status.video_url:
                raise ProviderError(f"{self.name} reported success without a video URL (task {task_id})",
                                    kind="protocol")
            await self.entry.mark(video_url=status.video_url)
            return status
        if status.state == JobState.FAILED:
            reason = status.error_message or status.error_code or "no reason given"
            await self.entry.mark(error=reason)
            raise JobFailed(f"{self.name} reports task {task_id} failed: {reason}."
                            + ("" if self.later.free else " Failed jobs are normally not billed."),
                            task_id=task_id, code=status.error_code)
        if status.state == JobState.CANCELED:
            raise JobCancelled(f"Task {task_id} was cancelled at the provider.", task_id=task_id)
        if self.later.in_process:
            raise ProviderError(f"The simulator inside this process does not know task {task_id}: it keeps only "
                                f"the jobs it ran since this process started. Run the request again (it is free).",
                                kind="not_found")
        raise ProviderError(f"{self.name} does not know task {task_id}: it expired (results are kept about "
                            f"24 h) or belongs to another account or region", kind="not_found")

    async def cancel(self) -> None:
        """The user stopped the run: cancel the job at the provider when we may and can, record what became of
        it, and raise JobCancelled saying so."""
        outcome = await self._cancel_at_provider()
        if outcome is not CancelOutcome.CANCELLED:
            await self.entry.mark(LedgerStatus.ABANDONED,
                                  error=f"stopped by the user while {self.state.value if self.state else 'submitting'}")
        collect = "" if outcome is CancelOutcome.CANCELLED else self.later.collect(self.task_id)
        raise JobCancelled(f"Stopped waiting for task {self.task_id}: {outcome.told(self.later)}. " + collect,
                           task_id=self.task_id)

    async def _cancel_at_provider(self) -> CancelOutcome:
        if not self.cancel_job:
            return CancelOutcome.LEFT_RUNNING
        call = self.adapter.cancel_call(self.task_id) if self.adapter.caps.supports_cancel else None
        if call is None:
            return CancelOutcome.NO_CANCEL_API
        self.watch.update(Phase.CANCELLING)
        try:
            await asyncio.wait_for(self.transport.call(call), timeout=5)
        except (ProviderError, asyncio.TimeoutError, aiohttp.ClientError):
            return CancelOutcome.REFUSED
        await self.entry.mark(LedgerStatus.CANCELED)
        return CancelOutcome.CANCELLED
