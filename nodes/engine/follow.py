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
import math
import time
import weakref
from dataclasses import dataclass
from enum import Enum

import aiohttp

from .durations import Forecast, Mix, Spread
from .errors import JobCancelled, JobFailed, JobTimeout, ProviderError
from .http import Transport, is_loopback
from .later import Later
from .ledger import LedgerEntry, LedgerStatus
from .progress import Phase, Watch
from .protocol import JobState, JobStatus

log = logging.getLogger("happyhorse.runner")

STEADY_S = 7.0          # the fixed rhythm polls are budgeted against (ComfyUI's partner nodes poll every 7 s)
DOUBT = 0.2             # the share of belief kept for "the history is wrong" (Forecast.fallback)
EXHAUSTED = 0.01        # below this chance of still running, the forecast is spent (or wrong)
PROGRESS_MIN = 0.02     # a progress fraction below this says too little about the end
PROGRESS_SIGMA = 0.01   # how far a progress-based end may be off at best (relative)
PLAN_ITERATIONS = 14
STEP_ITERATIONS = 12
MAX_PLAN = 400
# Keyed by the loop object (weakly: ComfyUI may run prompts in new loops): the moment each provider may next be
# polled.
_poll_clock: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, float]]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class PollPolicy:
    """How often one host may be asked about a job. The adapter states the host's documented limits.

    min_s: never sooner than this after the previous poll. max_s: never longer between polls (the sparse
    end, while the job cannot be done yet). steady_s: the budget - a job gets about as many polls as asking
    every steady_s seconds would take (ComfyUI's partner nodes poll every 7 s) - and the rhythm once the job
    is later than anything the forecast expected (then the forecast is wrong, and we fall back to it).
    max_qps: the host's documented limit on polls per second for one account, shared by every job this
    process follows there."""

    min_s: float
    max_s: float
    steady_s: float = STEADY_S
    max_qps: float | None = None

    def scaled(self, factor: float) -> "PollPolicy":
        """Every interval times factor (time-scaled benchmarks and tests)."""
        return PollPolicy(self.min_s * factor, self.max_s * factor, self.steady_s * factor,
                          None if self.max_qps is None else self.max_qps / factor)

    @classmethod
    def fixed(cls, interval_s: float) -> "PollPolicy":
        return cls(interval_s, interval_s, interval_s)


def poll_policy(adapter, base_url: str) -> PollPolicy:
    """A host on this machine (the simulator, a local proxy) costs nothing to poll: keep it snappy."""
    if is_loopback(base_url):
        return PollPolicy(0.2, 1.0, 0.5)
    return PollPolicy(adapter.poll_min_s, adapter.poll_max_s, max(adapter.poll_min_s, STEADY_S),
                      adapter.poll_max_qps)


class Pace:
    """When to poll next, from a forecast of when the job finishes (seconds since it was submitted).

    The polls a job may take are budgeted: as many as PollPolicy.steady_s polling would take for the time the
    forecast expects. They are placed where the job is likely to finish: each interval h is the longest for
    which (chance the job finishes within it, given it has not yet) x h stays under one constant, which puts
    polls at a density proportional to the square root of the hazard - sparse while the job cannot be done,
    dense around the expected end - and the constant is the one that spends the budget. This minimises the
    expected lag for that many polls. DOUBT of the belief stays on the fallback (the adapter's estimate, wide),
    so a misleading history still has the end looked for where it plausibly is; a job later than the learned
    forecast allows drops it and gets a fresh budget on the fallback; past everything, every steady_s.
    What the host says updates the forecast: the moment a job started running (exact where the host reports it,
    e.g. DashScope's scheduled_time) re-anchors it on the learned run time, and a progress fraction (Apiframe)
    gives its own estimate of the end."""

    def __init__(self, forecast: Forecast | None, policy: PollPolicy):
        self.policy = policy
        # None: when the job was submitted is unknown (an attach or collect): the steady rhythm throughout.
        self.forecast_known = forecast is not None
        self.base = forecast.total if forecast else Spread(1.0, 1.0)   # re-anchored once running
        self.run = forecast.run if forecast else None
        self.fallback = forecast.fallback if forecast else None
        self.dist = self.base               # base, combined with the latest progress reading
        self.anchored = False
        self._plan: list[float] = []
        self._since = (0.0, 0)              # the budget counts time and polls from here

    @property
    def mix(self) -> Mix:
        return Mix(self.dist, self.fallback, DOUBT)

    @property
    def expected_s(self) -> float:
        return self.dist.quantile(0.5)

    def started_running(self, began: float, uncertainty: float = 0.0) -> None:
        """The job started running at `began` (seconds since submit), known to within `uncertainty`."""
        if self.run is None or self.anchored or not self.forecast_known:
            return
        run = self.run
        if uncertainty > 0:       # a start seen only between two polls: uniform over that gap
            run = Spread(run.median_s, math.hypot(run.sigma, uncertainty / math.sqrt(12) / run.median_s),
                         run.samples)
        self.base = self.dist = run.shifted(began)
        self.anchored = True
        self._plan = []

    def progressed(self, fraction: float, now: float) -> None:
        """The host says the job is `fraction` done at `now`: read as a constant rate since submit (Apiframe's
        progress is a bare 0-100 number [U]; a host whose progress is not linear makes this estimate wrong,
        which the fallback bounds). Weighed against the forecast by precision; integer percents limit it."""
        if not self.forecast_known or not PROGRESS_MIN <= fraction < 1:
            return
        end = now / fraction - self.base.offset_s
        if end <= 0 or now - self.base.offset_s <= 0:
            return
        rel = max(PROGRESS_SIGMA, 0.005 / fraction) * (now / fraction) / end
        w_base, w_prog = 1 / self.base.sigma ** 2, 1 / rel ** 2
        mu = (w_base * math.log(self.base.median_s) + w_prog * math.log(end)) / (w_base + w_prog)
        self.dist = Spread(math.exp(mu), 1 / math.sqrt(w_base + w_prog), self.base.samples, self.base.offset_s)
        self._plan = []

    def next_delay(self, now: float, polls: int = 0) -> float:
        """Seconds to wait after a poll at `now` (seconds since submit) that found the job unfinished; `polls`
        were made so far."""
        p = self.policy
        if self.fallback is not None and self.dist.sf(now) < EXHAUSTED:
            # Later than the history allows: this job proves it wrong; look where the fallback says.
            # The polls spent on it are sunk: from here it gets what the steady rhythm would take from now on.
            self.base = self.dist = self.fallback
            self.fallback, self.run, self._plan, self._since = None, None, [], (now, polls)
        if not self._plan:
            self._plan = self._make_plan(now, polls)
        while self._plan and self._plan[0] < now + p.min_s:
            self._plan.pop(0)
        if self._plan:
            return self._plan[0] - now
        return max(p.min_s, min(p.max_s, p.steady_s))         # later than the forecast: the steady rhythm

    def _make_plan(self, t0: float, polls: int) -> list[float]:
        p, d = self.policy, self.mix
        s0 = d.sf(t0)
        if not self.forecast_known or s0 < EXHAUSTED or p.max_s <= p.min_s:
            return []
        # What the steady rhythm would spend on a job of the expected length, less what this one has spent.
        since, spent = self._since
        budget = max(1.0, (t0 - since + Mix(self.dist).mean_after(t0)) / p.steady_s + 0.5 - (polls - spent))
        lo, hi = math.log(p.min_s * 1e-4), math.log(p.max_s)
        sparsest = self._expected_polls(t0, math.exp(hi))
        if sparsest[0] > budget:
            return sparsest[1]
        for _ in range(PLAN_ITERATIONS):            # the smallest constant (densest plan) within budget
            mid = (lo + hi) / 2
            if self._expected_polls(t0, math.exp(mid))[0] > budget:
                lo = mid
            else:
                hi = mid
        return self._expected_polls(t0, math.exp(hi))[1]

    def _expected_polls(self, t0: float, k: float) -> tuple[float, list[float]]:
        """(expected number of polls, their times) of the plan with constant k, from t0 until the forecast
        is exhausted."""
        p, d, main = self.policy, self.mix, self.dist
        s0, m0 = d.sf(t0), max(main.sf(t0), 1e-12)
        times, expected, t = [], 0.0, t0
        while len(times) < MAX_PLAN:
            s_t = d.sf(t)
            if s_t / s0 < EXHAUSTED:
                break
            # This poll happens only if the job was unfinished at t, counted as the forecast (not the doubt)
            # sees it: the polls the doubt places are insurance, paid only when the history was wrong.
            expected += main.sf(t) / m0
            lo, hi = p.min_s, p.max_s
            if (1 - d.sf(t + hi) / s_t) * hi > k:
                for _ in range(STEP_ITERATIONS):
                    mid = (lo + hi) / 2
                    if (1 - d.sf(t + mid) / s_t) * mid > k:
                        hi = mid
                    else:
                        lo = mid
            else:
                lo = hi
            t += lo
            times.append(t)
        return expected, times


async def poll_turn(name: str, max_qps: float | None) -> None:
    """Wait for this provider's next poll slot: at most max_qps polls per second from this event loop (a host
    that documents a per-account query rate, e.g. DashScope's 20 QPS, is never asked faster)."""
    if not max_qps:
        return
    per_loop = _poll_clock.setdefault(asyncio.get_running_loop(), {})
    now = time.monotonic()
    at = max(now, per_loop.get(name, 0.0))
    per_loop[name] = at + 1 / max_qps
    if at > now:
        await asyncio.sleep(at - now)


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
    another run or another machine. submitted: when this run's submit was answered (time.monotonic()); the
    pace counts from there and the first poll waits for it (a job just submitted cannot be done). None (attach,
    collect): the job's age is unknown, so it polls at once and then at the steady rhythm."""

    def __init__(self, adapter, transport: Transport, task_id: str, watch: Watch, entry: LedgerEntry, *,
                 timeout_s: float, queue_timeout_s: float | None, policy: PollPolicy | None, forecast: Forecast | None,
                 later: Later, cancel_job: bool = True, submitted: float | None = None):
        self.adapter = adapter
        self.transport = transport
        self.task_id = task_id
        self.watch = watch
        self.entry = entry
        self.timeout_s = timeout_s
        self.queue_timeout_s = queue_timeout_s
        self.policy = policy or poll_policy(adapter, transport.base_url)
        self.pace = Pace(forecast, self.policy)
        self.later = later
        self.cancel_job = cancel_job
        self.submitted = submitted
        self.fresh = submitted is not None
        self.state: JobState | None = None        # the last state the host reported
        self._unlisted: set[str] = set()          # undocumented status words already logged
        self.polls = 0

    @property
    def name(self) -> str:
        return self.adapter.caps.display_name

    async def until_finished(self) -> JobStatus:
        started = self.submitted if self.submitted is not None else time.monotonic()
        running_since: float | None = None
        # When the last poll found it unfinished (a fresh job: it was unfinished when submitted).
        last_unfinished: float | None = started if self.fresh else None
        if self.fresh:
            await self.watch.sleep(self.pace.next_delay(time.monotonic() - started, self.polls), on_cancel=self.cancel)
        while True:
            if self.watch.cancelled():
                await self.cancel()
            await poll_turn(self.adapter.name, self.policy.max_qps)
            asked = time.monotonic()
            reply = await self.watch.guard(self.transport.call(self.adapter.poll_call(self.task_id)),
                                           on_cancel=self.cancel)
            self.polls += 1
            status = self.adapter.parse_poll(reply)
            now = time.monotonic()
            began = self._began(status, started, asked, last_unfinished)
            await self._record(status, after=last_unfinished, began=began[0] if began and began[1] else None)
            if status.state.finished:
                return await self._finished(status)
            if status.state == JobState.UNRECOGNIZED:
                self.watch.update(Phase.RUNNING, detail=f"{self.name} says '{status.raw_state}', a status its "
                                                        f"documents do not list; still waiting")
            else:
                self.watch.update(Phase.QUEUED if status.state == JobState.QUEUED else Phase.RUNNING)
            if status.state in (JobState.RUNNING, JobState.UNRECOGNIZED) and running_since is None:
                running_since = now
                if began is not None:
                    moment, exact = began
                    self.pace.started_running(moment - started, 0.0 if exact else asked - last_unfinished)
            last_unfinished = asked
            if status.progress is not None:
                self.pace.progressed(status.progress, asked - started)
            if self.pace.forecast_known:
                self.watch.expected = self.pace.expected_s + (started - self.watch.started)
            if running_since is not None and now - running_since > self.timeout_s:
                await self.entry.mark(LedgerStatus.TIMED_OUT)
                raise JobTimeout(f"Task {self.task_id} is still running after {self.timeout_s:.0f} s. It was not "
                                 f"cancelled. {self.later.collect(self.task_id)}", task_id=self.task_id)
            if (running_since is None and self.queue_timeout_s is not None
                    and now - started > self.queue_timeout_s):
                await self.entry.mark(LedgerStatus.TIMED_OUT)
                raise JobTimeout(f"Task {self.task_id} is still queued after {self.queue_timeout_s:.0f} s; it was "
                                 f"not cancelled. {self.later.collect(self.task_id)}", task_id=self.task_id)
            await self.watch.sleep(self.pace.next_delay(time.monotonic() - started, self.polls), on_cancel=self.cancel)

    def _began(self, status: JobStatus, started: float, asked: float, last_unfinished: float | None
               ) -> tuple[float, bool] | None:
        """(monotonic moment, exact) a job first seen running started: the host's own word where it gives
        one, else the middle between the last poll that had not seen it running and this one. None: not a
        start, or unknown (a job already running at the first poll of an attach or collect)."""
        if status.state != JobState.RUNNING or self.state == JobState.RUNNING:
            return None
        if status.queued_s is not None and self.fresh:
            return started + status.queued_s, True
        if last_unfinished is None:
            return None
        return (last_unfinished + asked) / 2, False

    async def _record(self, status: JobStatus, *, after: float | None, began: float | None) -> None:
        """A changed state goes to the ledger with the last poll that had not seen it yet ("after") and, where
        the host said when the job started running, that moment ("began"): durations.py learns each host's
        times from these."""
        if status.state == JobState.UNRECOGNIZED:
            # Not a state to record: the ledger keeps the last documented one, which stays attachable.
            if status.raw_state not in self._unlisted:
                self._unlisted.add(status.raw_state)
                log.warning("task %s: %s answered status %r, which its documents do not list; treated as still "
                            "running", self.task_id, self.name, status.raw_state)
            return
        if status.state != self.state:
            log.info("task %s: %s", self.task_id, status.raw_state or status.state)
            wall = time.time() - time.monotonic()
            noted = {} if after is None else {"after": round(after + wall, 3)}
            if began is not None:
                noted["began"] = round(began + wall, 3)
            await self.entry.mark(LedgerStatus.of(status.state), noted=noted or None)
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
