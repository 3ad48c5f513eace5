"""Run a job end to end: validate -> upload -> submit -> record -> poll -> download -> verify -> move into place.

Host-neutral: it talks to a provider only through an adapter's HttpCalls. Cancellable within a fraction of a
second at every wait; the paid submit itself is never interrupted half-way (its answer is needed to cancel
the job at the provider or to collect it later).
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import stat
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import aiohttp

from .capabilities import ProviderCaps
from .errors import (DownloadError, HappyHorseError, JobCancelled, JobFailed, JobTimeout, ProviderError,
                     SubmitUncertain)
from .http import Transport, is_loopback, redact_url
from .ledger import Ledger
from .pricing import Estimate, estimate
from .protocol import JobStatus
from .request import GenerationRequest
from .uploads import prepare_media
from .validation import validate_request

log = logging.getLogger("happyhorse.runner")

CANCEL_CHECK_S = 0.2
TICK_S = 1.0
RESULT_LIFETIME_S = 24 * 3600     # hosts keep task ids and result URLs about a day
SUBMIT_GRACE_S = 120.0            # longer than any submit takes (transport timeout 60 s plus retries on refusal)
# Ledger states of a paid job we can still follow to its video instead of paying again.
ATTACHABLE = {"submitted", "queued", "running", "succeeded", "abandoned", "timed_out", "download_failed", "done"}


@dataclass
class RunOptions:
    out_path: str | None = None
    out_dir: str = "happyhorse_output"
    timeout_s: float = 1800.0                 # running time allowed (queueing does not count)
    queue_timeout_s: float | None = None      # None: a long queue is not a failure
    max_download_bytes: int = 1 << 30
    download_attempts: int = 3
    force_new: bool = False                   # True: always submit a new (paid) job, never attach or reuse
    poll_bounds: tuple[float, float] | None = None   # (min, max) seconds between polls; None: the adapter's
    expected_s: float | None = None           # expected submit-to-result time; None: the adapter's estimate
    upload: str = "auto"                      # how input files reach the provider: uploads.UPLOAD_CHOICES


@dataclass(frozen=True)
class Progress:
    phase: str          # validating|uploading|submitting|queued|running|downloading|verifying|cancelling|done
    elapsed_s: float
    expected_s: float | None = None
    task_id: str | None = None
    estimate: Estimate | None = None
    detail: str = ""

    @property
    def remaining_s(self) -> float | None:
        if self.expected_s is None or self.phase not in ("queued", "running"):
            return None
        return max(0.0, self.expected_s - self.elapsed_s)

    def text(self) -> str:
        parts = [self.phase, f"{self.elapsed_s:.0f}s elapsed"]
        if self.remaining_s is not None:
            parts.append(f"~{self.remaining_s:.0f}s left" if self.remaining_s > 0 else "any moment now")
        if self.estimate is not None:
            parts.append(self.estimate.summary())
        if self.task_id:
            parts.append(f"task {self.task_id}")
        if self.detail:
            parts.append(self.detail)
        return " | ".join(parts)


@dataclass
class JobResult:
    path: str
    task_id: str
    provider: str
    mode: str
    version: str
    billed_seconds: float | None
    cost_usd: float | None
    video_url: str | None
    ledger_id: str | None
    width: int = 0
    height: int = 0
    duration_s: float = 0.0
    fps: float = 0.0
    has_audio: bool = False
    origin: str = "new"          # new | attached (an identical job was still running) | reused (already made)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "extra"}
        d["video_url"] = redact_url(self.video_url) if self.video_url else None
        d.update(self.extra)
        return d


def next_poll_delay(elapsed: float, expected: float, min_s: float, max_s: float) -> float:
    """Sparse while the job cannot be done yet, dense around the expected finish, then easing off."""
    remaining = expected - elapsed
    delay = remaining / 3 if remaining > 0 else min_s + (elapsed - expected) * 0.1
    return max(min_s, min(max_s, delay))


def safe_name(text: str, limit: int = 40) -> str:
    """Provider-supplied ids never become paths as-is."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)[:limit] or "job"


# Keyed by the loop object itself (weakly): ComfyUI may run each prompt in a new loop, and a dead loop's id can
# be reused by a new one, which must not inherit the old loop's semaphore.
_slots: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]]" = \
    weakref.WeakKeyDictionary()


def provider_slot(name: str, limit: int) -> asyncio.Semaphore:
    """At most `limit` jobs in flight per provider in this event loop (hosts cap concurrency per account)."""
    per_loop = _slots.setdefault(asyncio.get_running_loop(), {})
    if name not in per_loop:
        per_loop[name] = asyncio.Semaphore(limit)
    return per_loop[name]


_inflight: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str, str], asyncio.Future]]" = \
    weakref.WeakKeyDictionary()


def _inflight_for_loop() -> dict[tuple[str, str, str], asyncio.Future]:
    """Submissions under way in this event loop, by (provider, endpoint, request fingerprint) -> task id."""
    return _inflight.setdefault(asyncio.get_running_loop(), {})


def check_request(req: GenerationRequest, adapter, all_caps: Mapping[str, ProviderCaps] | None = None
                  ) -> tuple[GenerationRequest, Estimate]:
    """Validate and price without sending anything. Returns the request completed with probed facts."""
    req = _with_source_duration(req)
    validate_request(req, adapter.caps, all_caps)
    return req, estimate(req, adapter.name, adapter.prices)


class JobRunner:
    def __init__(self, endpoint, *, ledger: Ledger | None = None, all_caps: Mapping[str, ProviderCaps] | None = None,
                 session: aiohttp.ClientSession | None = None):
        self.endpoint = endpoint
        self.adapter = endpoint.adapter
        self.ledger = ledger
        self.all_caps = all_caps
        self._session = session

    def _transport(self) -> Transport:
        return Transport(self.endpoint.base_url, self.adapter.auth_headers(self.endpoint.key),
                         session=self._session, error_mapper=self.adapter.map_error)

    # --- public -----------------------------------------------------------------------------------
    def check(self, req: GenerationRequest) -> tuple[GenerationRequest, Estimate]:
        return check_request(req, self.adapter, self.all_caps)

    async def run(self, req: GenerationRequest, opts: RunOptions | None = None,
                  on_progress: Callable[[Progress], None] | None = None,
                  is_cancelled: Callable[[], bool] | None = None) -> JobResult:
        opts = opts or RunOptions()
        watch = _Watch(on_progress, is_cancelled)
        watch.update("validating")
        req, est = self.check(req)
        watch.estimate = est
        inflight = _inflight_for_loop()
        key = (self.adapter.name, self.endpoint.base_url, req.fingerprint())
        if not opts.force_new:
            if key in inflight:
                # The same request is being submitted in this process right now (e.g. two identical nodes).
                try:
                    task_id = await watch.guard(asyncio.shield(inflight[key]))
                except HappyHorseError:
                    task_id = None          # it failed before submitting: go on and submit this one
                if task_id is not None:
                    return await self._attach(task_id, None, req, est, opts, watch)
            if self.ledger is not None:
                prior = await self._prior_job(req, est, opts, watch)
                if prior is not None:
                    return prior
        claim = asyncio.get_running_loop().create_future()
        inflight.setdefault(key, claim)
        try:
            return await self._submit_and_follow(req, est, opts, watch, claim)
        finally:
            if inflight.get(key) is claim:
                del inflight[key]
            if not claim.done():
                # Waiters then submit for themselves. Fetching the exception here marks it retrieved, so asyncio
                # does not warn when nobody was waiting.
                claim.set_exception(JobCancelled("the identical request stopped before submitting"))
                claim.exception()

    async def _submit_and_follow(self, req: GenerationRequest, est: Estimate, opts: RunOptions, watch: "_Watch",
                                 claim: asyncio.Future) -> JobResult:
        watch.update("uploading")
        media = await watch.guard(prepare_media(req, self.endpoint, self._transport(), opts.upload))
        watch.raise_if_cancelled(None)

        async with provider_slot(self.adapter.name, self.adapter.caps.max_concurrent_jobs):
            # Recorded only once a slot is ours, right before the POST: a 'submitting' record is then never
            # older than one submit, so an old one can only mean the process died mid-submit.
            ledger_id = self.ledger.create(req, self.adapter.name, self.endpoint.base_url) if self.ledger else None
            async with self._transport() as transport:
                watch.update("submitting")
                call = self.adapter.submit_call(req, media)
                try:
                    # Not raced against cancel: the answer is needed to cancel or collect the paid job.
                    reply = await transport.submit(call, ok=self.adapter.submit_ok)
                    task_id = self.adapter.parse_submit(reply)
                except SubmitUncertain as exc:
                    self._record(ledger_id, "uncertain", error=str(exc))
                    raise
                except ProviderError as exc:
                    self._record(ledger_id, "rejected", error=str(exc))
                    raise
                self._record(ledger_id, "submitted", task_id=task_id)
                log.info("%s accepted the job: task %s (ledger %s)", self.adapter.name, task_id, ledger_id)
                claim.set_result(task_id)
                watch.task_id = task_id
                return await self._follow(transport, task_id, req, est, opts, watch, ledger_id)

    async def collect(self, task_id: str, req: GenerationRequest | None = None, opts: RunOptions | None = None,
                      on_progress: Callable[[Progress], None] | None = None,
                      is_cancelled: Callable[[], bool] | None = None) -> JobResult:
        """Poll and download a job that was already submitted (after a crash, or started elsewhere)."""
        opts = opts or RunOptions()
        watch = _Watch(on_progress, is_cancelled)
        watch.task_id = task_id
        ledger_id = None
        if self.ledger is not None:
            rec = self.ledger.find_task(task_id, self.adapter.name)
            ledger_id = rec.id if rec else self.ledger.create_collect(self.adapter.name, self.endpoint.base_url,
                                                                      task_id)
            if req is None and rec is not None and rec.mode:
                req = GenerationRequest(mode=rec.mode, version=rec.version, prompt=rec.prompt,
                                        resolution=rec.params.get("resolution", "720p"),
                                        duration_s=rec.params.get("duration_s"))
        req = req or GenerationRequest(mode="t2v", prompt="(collected)")
        est = estimate(req, self.adapter.name, self.adapter.prices)
        watch.estimate = est
        async with self._transport() as transport:
            # Cancelling a collect only stops waiting: the job may belong to another run or another machine.
            return await self._follow(transport, task_id, req, est, opts, watch, ledger_id, cancel_job=False)

    # --- internals --------------------------------------------------------------------------------
    async def _attach(self, task_id: str, ledger_id: str | None, req: GenerationRequest, est: Estimate,
                      opts: RunOptions, watch: "_Watch") -> JobResult:
        """Follow a job an identical request already paid for, instead of submitting again."""
        if ledger_id is None and self.ledger is not None:
            rec = self.ledger.find_task(task_id, self.adapter.name)
            ledger_id = rec.id if rec else None
        watch.task_id = task_id
        # Kept on every later progress line: the phase itself passes too fast to be seen.
        watch.note = "re-attached to an identical job already paid for; nothing submitted again"
        watch.update("attaching")
        async with self._transport() as transport:
            result = await self._follow(transport, task_id, req, est, opts, watch, ledger_id)
        result.origin = "attached"
        return result

    async def _prior_job(self, req: GenerationRequest, est: Estimate, opts: RunOptions,
                         watch: "_Watch") -> JobResult | None:
        """Never pay twice for the same request: reuse a finished video, attach to a job still in flight."""
        prior = self.ledger.find_fingerprint(req.fingerprint(), self.adapter.name, self.endpoint.base_url)
        # An identical submit in flight right now (another node, another process): wait for its task id.
        while prior is not None and prior.status == "submitting" and time.time() - prior.created_at < SUBMIT_GRACE_S:
            await watch.sleep(0.5)
            prior = self.ledger.get(prior.id)
        if prior is None or time.time() - prior.created_at > RESULT_LIFETIME_S:
            return None
        if prior.status == "done" and prior.local_path and os.path.isfile(prior.local_path):
            path = prior.local_path
            if opts.out_path and os.path.abspath(opts.out_path) != os.path.abspath(path):
                Path(opts.out_path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, opts.out_path)
                path = opts.out_path
            watch.task_id = prior.task_id
            watch.update("reused", detail=f"same request as task {prior.task_id}; nothing submitted or billed")
            from .media import probe_video

            info = probe_video(path)
            return JobResult(path=path, task_id=prior.task_id or "", provider=self.adapter.name, mode=req.mode,
                             version=req.version, billed_seconds=0.0, cost_usd=0.0, video_url=prior.video_url,
                             ledger_id=prior.id, width=info.width, height=info.height, duration_s=info.duration_s,
                             fps=info.fps, has_audio=info.has_audio, origin="reused")
        if prior.task_id and prior.status in ATTACHABLE:
            return await self._attach(prior.task_id, prior.id, req, est, opts, watch)
        if prior.status in ("uncertain", "submitting"):
            # 'submitting' this old means the process died during the POST: the host may have the job.
            raise SubmitUncertain(
                f"An identical request was sent at {time.strftime('%H:%M', time.localtime(prior.created_at))} but "
                f"its submit never got an answer (it broke off, or the program stopped), so it may be running "
                f"and billed at {self.adapter.caps.display_name}. "
                f"Check the provider's dashboard; to submit anyway, force a new generation "
                f"(--new in the CLI, force_new on the node).")
        return None

    def _record(self, ledger_id: str | None, status: str | None = None, **fields: Any) -> None:
        if self.ledger is not None and ledger_id is not None:
            self.ledger.update(ledger_id, status=status, **fields)

    async def _follow(self, transport: Transport, task_id: str, req: GenerationRequest, est: Estimate,
                      opts: RunOptions, watch: "_Watch", ledger_id: str | None, cancel_job: bool = True) -> JobResult:
        expected = opts.expected_s or self.adapter.expected_seconds(req)
        watch.expected = expected
        watch.start_ticker()
        try:
            status = await self._poll_until_done(transport, task_id, expected, opts, watch, ledger_id, cancel_job)
            path = await self._download(transport, status, task_id, req, opts, watch, ledger_id)
        finally:
            await watch.stop_ticker()
        from .media import probe_video

        info = probe_video(path)
        billed = status.billed_seconds if status.billed_seconds is not None else est.billed_seconds
        cost = status.cost_usd
        if cost is None and billed is not None and est.usd_per_second is not None:
            cost = round(billed * est.usd_per_second, 4)
        self._record(ledger_id, "done", local_path=path, billed_seconds=billed, cost_usd=cost)
        watch.update("done", detail=path)
        return JobResult(path=path, task_id=task_id, provider=self.adapter.name, mode=req.mode, version=req.version,
                         billed_seconds=billed, cost_usd=cost, video_url=status.video_url, ledger_id=ledger_id,
                         width=info.width, height=info.height, duration_s=info.duration_s, fps=info.fps,
                         has_audio=info.has_audio)

    async def _poll_until_done(self, transport: Transport, task_id: str, expected: float, opts: RunOptions,
                               watch: "_Watch", ledger_id: str | None, cancel_job: bool) -> JobStatus:
        started = time.monotonic()
        running_since: float | None = None
        last_state = ""
        while True:
            def on_cancel():
                return self._cancel_at_provider(transport, task_id, last_state, ledger_id, cancel_job)

            if watch.cancelled():
                await on_cancel()
            reply = await watch.guard(transport.call(self.adapter.poll_call(task_id)), on_cancel=on_cancel)
            status = self.adapter.parse_poll(reply)
            if status.state != last_state:
                log.info("task %s: %s", task_id, status.raw_state or status.state)
                self._record(ledger_id, status.state)
                last_state = status.state
            watch.update(status.state)
            now = time.monotonic()
            if status.state == "succeeded":
                if not status.video_url:
                    raise ProviderError(f"{self.adapter.caps.display_name} reported success without a video URL "
                                        f"(task {task_id})", kind="protocol")
                self._record(ledger_id, video_url=status.video_url)
                return status
            if status.state == "failed":
                reason = status.error_message or status.error_code or "no reason given"
                self._record(ledger_id, error=reason)
                raise JobFailed(f"{self.adapter.caps.display_name} reports task {task_id} failed: {reason}. "
                                f"Failed jobs are normally not billed.", task_id=task_id, code=status.error_code)
            if status.state == "canceled":
                raise JobCancelled(f"Task {task_id} was cancelled at the provider.", task_id=task_id)
            if status.state == "unknown":
                raise ProviderError(f"{self.adapter.caps.display_name} does not know task {task_id}: it expired "
                                    f"(results are kept about 24 h) or belongs to another account or region",
                                    kind="not_found")
            if status.state == "running" and running_since is None:
                running_since = now
            if running_since is not None and now - running_since > opts.timeout_s:
                self._record(ledger_id, "timed_out")
                raise JobTimeout(f"Task {task_id} is still running after {opts.timeout_s:.0f} s. It was not "
                                 f"cancelled; collect it later with `happyhorse jobs collect {task_id} "
                                 f"--provider {self.adapter.name}` or the Collect node.", task_id=task_id)
            if (running_since is None and opts.queue_timeout_s is not None
                    and now - started > opts.queue_timeout_s):
                self._record(ledger_id, "timed_out")
                raise JobTimeout(f"Task {task_id} is still queued after {opts.queue_timeout_s:.0f} s; it was not "
                                 f"cancelled and can be collected later.", task_id=task_id)
            delay = next_poll_delay(watch.elapsed(), expected, *(opts.poll_bounds or self._poll_bounds()))
            await watch.sleep(delay, on_cancel=on_cancel)

    def _poll_bounds(self) -> tuple[float, float]:
        # A host on this machine (the simulator, a local proxy) costs nothing to poll: keep it snappy.
        if is_loopback(self.endpoint.base_url):
            return 0.2, 1.0
        return self.adapter.poll_min_s, self.adapter.poll_max_s

    async def _cancel_at_provider(self, transport: Transport, task_id: str, state: str,
                                  ledger_id: str | None, cancel_job: bool = True) -> None:
        call = self.adapter.cancel_call(task_id) if self.adapter.caps.supports_cancel and cancel_job else None
        outcome = ("it was left running at the provider" if not cancel_job
                   else "its API has no cancel, so it may still run and be billed")
        if call is not None:
            try:
                await asyncio.wait_for(transport.call(call), timeout=5)
                outcome = "cancelled at the provider too (not billed)"
                self._record(ledger_id, "canceled")
            except (ProviderError, asyncio.TimeoutError, aiohttp.ClientError):
                outcome = ("the provider refused to cancel it (it had already started), so it may finish and be "
                           "billed")
        if self.ledger is not None and ledger_id is not None and not outcome.startswith("cancelled"):
            self._record(ledger_id, "abandoned", error=f"stopped by the user while {state or 'submitting'}")
        raise JobCancelled(f"Stopped waiting for task {task_id}: {outcome}. "
                           + ("" if outcome.startswith("cancelled") else
                              f"Collect it later with `happyhorse jobs collect {task_id} --provider "
                              f"{self.adapter.name}` or the Collect node."), task_id=task_id)

    async def _download(self, transport: Transport, status: JobStatus, task_id: str, req: GenerationRequest,
                        opts: RunOptions, watch: "_Watch", ledger_id: str | None) -> str:
        from .media import MediaError, verify_video

        target = Path(opts.out_path) if opts.out_path else \
            Path(opts.out_dir) / f"happyhorse_{self.adapter.name}_{req.mode}_{safe_name(task_id)}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        last_error = ""
        for attempt in range(opts.download_attempts):
            watch.update("downloading", detail=f"try {attempt + 1}" if attempt else "")
            fd, part = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    await watch.guard(transport.download(status.video_url, fh, max_bytes=opts.max_download_bytes))
                watch.update("verifying")
                verify_video(part)
                # mkstemp made it owner-only; a finished video gets a normal file's permissions (rw-r--r--).
                os.chmod(part, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
                os.replace(part, target)      # atomic: a reader never sees a partial file
                return str(target)
            except (DownloadError, MediaError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                last_error = str(exc) or type(exc).__name__
                if isinstance(exc, DownloadError) and "cap" in last_error:
                    break
            finally:
                if os.path.exists(part):
                    os.unlink(part)
            await watch.sleep(min(2.0 ** attempt, 8.0))
        self._record(ledger_id, "download_failed", error=last_error)
        raise DownloadError(f"Task {task_id} succeeded but its video could not be downloaded intact ({last_error}). "
                            f"Nothing was handed on. Collect it again with `happyhorse jobs collect {task_id} "
                            f"--provider {self.adapter.name}` (result URLs usually expire after 24 h).")


def _with_source_duration(req: GenerationRequest) -> GenerationRequest:
    if req.mode != "edit" or req.source_video is None or req.source_video.data is None \
            or req.source_video_duration_s is not None:
        return req
    from .media import MediaError, probe_video_bytes

    try:
        return req.with_(source_video_duration_s=probe_video_bytes(req.source_video.data).duration_s)
    except MediaError:
        return req              # validation reports the unreadable video


class _Watch:
    """Progress reporting (ticked once a second) and cancellation checks for one run."""

    def __init__(self, on_progress: Callable[[Progress], None] | None, is_cancelled: Callable[[], bool] | None):
        self.on_progress = on_progress
        self.is_cancelled = is_cancelled or (lambda: False)
        self.started = time.monotonic()
        self.phase = "starting"
        self.detail = ""
        self.task_id: str | None = None
        self.estimate: Estimate | None = None
        self.expected: float | None = None
        self.note = ""              # shown with every progress line once set (e.g. re-attached)
        self._ticker: asyncio.Task | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def cancelled(self) -> bool:
        return bool(self.is_cancelled())

    def update(self, phase: str, detail: str = "") -> None:
        self.phase, self.detail = phase, detail
        self.emit()

    def emit(self) -> None:
        if self.on_progress is not None:
            detail = "; ".join(x for x in (self.detail, self.note) if x)
            self.on_progress(Progress(self.phase, self.elapsed(), self.expected, self.task_id, self.estimate,
                                      detail))

    def start_ticker(self) -> None:
        async def tick() -> None:
            while True:
                await asyncio.sleep(TICK_S)
                self.emit()
        if self.on_progress is not None:
            self._ticker = asyncio.create_task(tick())

    async def stop_ticker(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            try:
                await self._ticker
            except asyncio.CancelledError:
                pass

    def raise_if_cancelled(self, task_id: str | None) -> None:
        if self.cancelled():
            raise JobCancelled("Cancelled before anything was submitted; nothing was billed.", task_id=task_id)

    async def sleep(self, seconds: float, on_cancel: Callable[[], Any] | None = None) -> None:
        end = time.monotonic() + seconds
        while True:
            if self.cancelled():
                if on_cancel is not None:
                    await on_cancel()
                raise JobCancelled("Cancelled.", task_id=self.task_id)
            left = end - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(CANCEL_CHECK_S, left))

    async def guard(self, coro, on_cancel: Callable[[], Any] | None = None):
        """Await coro, but give up on it within CANCEL_CHECK_S of a cancel request."""
        task = asyncio.ensure_future(coro)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=CANCEL_CHECK_S)
                if done:
                    return task.result()
                if self.cancelled():
                    task.cancel()
                    if on_cancel is not None:
                        await on_cancel()
                    raise JobCancelled("Cancelled.", task_id=self.task_id)
        finally:
            if not task.done():
                task.cancel()
