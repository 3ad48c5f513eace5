"""Run a job end to end. JobRunner.run reads top to bottom:

    check (validate + price) -> an earlier identical job? (reuse its file | attach to it)
    -> upload -> record + submit (a host at its limit answers 429: waited on) -> follow until finished
    -> download + verify -> record done

Each concern has one home; put new logic in the module that owns it:

    runner.py     this sequence, RunOptions, JobResult, Origin, check_request. Routing/failover between
                  providers (issue 15) wraps JobRunner from outside (a new module), it does not live here.
    dedupe.py     never pay twice: in-flight claims in this event loop and the ledger's earlier identical job
                  -> Reuse | Attach | Refetch | None (or SubmitUncertain, VideoGone). Reconciling with a host's
                  task list goes here.
    submit.py     the paid POST and its ledger record; waiting while a host answers 429 (at its limit).
    follow.py     polling a task until it finishes: the rhythm (Pace, PollPolicy, the host's rate limit),
                  time limits, mapping final states to errors, cancel at the provider (CancelOutcome).
                  Host words for states are mapped to JobState by each adapter's parse_poll, not here.
    delivery.py   the output file: target path and its writable check (before anything is paid), download
                  (retries, caps, hashed as it streams), full-decode verify, atomic move; SavedVideo (absolute
                  path, size, sha256) and the check that a reused file is still that very file.
    progress.py   Phase, Progress (what the user sees) and Watch (progress ticks, cancel checks at every wait).
    ledger.py     the journal and its typed LedgerStatus; LedgerEntry is one run's handle on its record.
    durations.py  how long a host takes per shape, learned from the ledger: the forecast the pace aims at.
    http.py       the transport (retries, redaction, download caps). uploads/ gets inputs to the provider.

Host-neutral: it talks to a provider only through an adapter's HttpCalls. Cancellable within a fraction of a
second at every wait; the paid submit itself is never interrupted half-way (its answer is needed to cancel
the job at the provider or to collect it later).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import aiohttp

from . import dedupe, reconcile
from .budget import SpendGuard
from .capabilities import ProviderCaps
from .delivery import SavedVideo, check_writable, copy_saved, download_video, target_path
from .errors import DownloadError, ProviderError, SubmitRefused, SubmitUncertain, VideoGone
from .durations import DurationModel
from .follow import Follower, PollPolicy
from .http import Transport, redact_url
from .later import Later
from .ledger import Ledger, LedgerEntry, LedgerStatus
from .pricing import Estimate, estimate
from .progress import Phase, Progress, Watch
from .protocol import JobStatus, TextEnum
from .request import GenerationRequest
from .submit import submit
from .uploads import prepare_media
from .validation import validate_request

if TYPE_CHECKING:
    from .media import FrameSink

log = logging.getLogger("happyhorse.runner")

__all__ = ["JobResult", "JobRunner", "Origin", "Phase", "Progress", "RunOptions", "check_request"]


@dataclass
class RunOptions:
    out_path: str | None = None
    out_dir: str = "happyhorse_output"
    timeout_s: float = 1800.0                 # running time allowed (queueing does not count)
    queue_timeout_s: float | None = None      # None: a long queue is not a failure
    max_download_bytes: int = 1 << 30
    download_attempts: int = 3
    force_new: bool = False                   # True: always submit a new (paid) job, never attach or reuse
    poll: PollPolicy | None = None            # the host's polling limits; None: the adapter's (follow.poll_policy)
    # Submit-to-result time assumed while the ledger has no finished job of this host (None: the adapter's
    # estimate); the ledger's history wins once there is some (durations.py).
    expected_s: float | None = None
    upload: str = "auto"                      # how input files reach the provider: uploads.UPLOAD_CHOICES
    # Gets the pictures of the download's verification pass (media.FrameSink): frames at no second decode.
    # Not called when an identical earlier job's file is reused (nothing is downloaded then).
    frames: FrameSink | None = None
    spend_guard: SpendGuard | None = None     # max_usd and the [budget] limits, checked before anything is sent
    # A host at its limit of jobs at once answers the submit with 429 (nothing billed): how long to keep sending
    # it again. None: until it takes the job (cancellable); 0: refuse at once (provider auto tries the next host).
    busy_wait_s: float | None = None


class Origin(TextEnum):
    """Where a result's video came from."""

    NEW = "new"                  # this run submitted (and paid for) the job
    ATTACHED = "attached"        # an identical job paid for earlier was followed to its video
    REUSED = "reused"            # an identical job's finished video was handed back; nothing submitted
    REFETCHED = "refetched"      # an identical job's file was gone or changed: its result was fetched again


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
    origin: Origin = Origin.NEW
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "extra"}
        d["video_url"] = redact_url(self.video_url) if self.video_url else None
        d.update(self.extra)
        return d


def check_request(req: GenerationRequest, adapter, all_caps: Mapping[str, ProviderCaps] | None = None
                  ) -> tuple[GenerationRequest, Estimate]:
    """Validate and price without sending anything. Returns the request completed with probed facts."""
    req = _with_source_duration(req)
    validate_request(req, adapter.caps, all_caps)
    return req, estimate(req, adapter.name, adapter.prices)


def _with_source_duration(req: GenerationRequest) -> GenerationRequest:
    if req.mode != "edit" or req.source_video is None or req.source_video.data is None \
            or req.source_video_duration_s is not None:
        return req
    from .media import MediaError, probe_video_bytes

    try:
        return req.with_(source_video_duration_s=probe_video_bytes(req.source_video.data).duration_s)
    except MediaError:
        return req              # validation reports the unreadable video


class JobRunner:
    def __init__(self, endpoint, *, ledger: Ledger | None = None, all_caps: Mapping[str, ProviderCaps] | None = None,
                 session: aiohttp.ClientSession | None = None):
        self.endpoint = endpoint
        self.adapter = endpoint.adapter
        self.ledger = ledger
        self.all_caps = all_caps
        self._session = session

    def check(self, req: GenerationRequest) -> tuple[GenerationRequest, Estimate]:
        return check_request(req, self.adapter, self.all_caps)

    async def run(self, req: GenerationRequest, opts: RunOptions | None = None,
                  on_progress: Callable[[Progress], None] | None = None,
                  is_cancelled: Callable[[], bool] | None = None) -> JobResult:
        opts = opts or RunOptions()
        watch = Watch(on_progress, is_cancelled)
        watch.update(Phase.VALIDATING)
        # Probing an edit source and hashing input bytes take a while on big inputs: off the event loop.
        req, est = await asyncio.to_thread(self.check, req)
        await asyncio.to_thread(check_writable, opts.out_path, opts.out_dir)
        watch.estimate = est
        key = (self.adapter.name, self.endpoint.base_url, await asyncio.to_thread(req.fingerprint))

        try:
            earlier = None if opts.force_new else await dedupe.find_earlier(
                key, self.ledger, self.adapter.caps.display_name, watch, free=Later.of(self.endpoint).free)
        except SubmitUncertain as exc:
            # An identical submit never got its answer: the host's task list may show what became of it.
            earlier = await self._find_lost_submit(req, key, watch, exc)
        if isinstance(earlier, dedupe.Reuse):
            return await self._reuse(earlier.record, req, opts, watch)
        if isinstance(earlier, dedupe.Refetch):
            return await self._refetch(earlier, req, est, opts, watch)
        if isinstance(earlier, dedupe.Attach):
            return await self._attach(earlier.task_id, earlier.ledger_id, req, est, opts, watch)

        with dedupe.Claim(key) as claim:
            if opts.spend_guard is not None:
                # before anything is sent (uploads included); it reads the ledger, so off the event loop
                await asyncio.to_thread(opts.spend_guard.check, est, self.ledger)
            watch.update(Phase.UPLOADING)
            try:
                media = await watch.guard(prepare_media(req, self.endpoint, self._transport(), opts.upload))
            except SubmitRefused:
                raise
            except ProviderError as exc:
                raise SubmitRefused.from_error(exc) from None    # nothing was submitted: provably no job there
            watch.raise_if_cancelled()
            # Recorded right before the POST: a 'submitting' record untouched for long can only mean the process
            # died mid-submit (submit.py touches it while a host at its limit is waited on).
            job_id = await self._record_new(req, est, opts.spend_guard)
            entry = LedgerEntry(self.ledger, job_id)
            async with self._transport() as transport:
                watch.update(Phase.SUBMITTING)
                sent_at = time.time()
                try:
                    task_id, submitted = await submit(self.adapter, transport, req, media, entry, watch,
                                                      opts.busy_wait_s)
                except SubmitUncertain as exc:
                    if not self.adapter.lists_tasks:
                        raise
                    task_id = await self._search_lost(transport, req, sent_at, entry.id, watch, exc)
                    await entry.mark(LedgerStatus.SUBMITTED, task_id=task_id)
                    submitted = time.monotonic() - (time.time() - sent_at)     # the job's age, roughly
                claim.resolve(task_id)
                watch.task_id = task_id
                return await self._follow(transport, task_id, req, est, opts, watch, entry, submitted=submitted)

    async def collect(self, task_id: str, req: GenerationRequest | None = None, opts: RunOptions | None = None,
                      on_progress: Callable[[Progress], None] | None = None,
                      is_cancelled: Callable[[], bool] | None = None) -> JobResult:
        """Poll and download a job that was already submitted (after a crash, or started elsewhere)."""
        opts = opts or RunOptions()
        await asyncio.to_thread(check_writable, opts.out_path, opts.out_dir)
        watch = Watch(on_progress, is_cancelled)
        watch.task_id = task_id
        entry = LedgerEntry(None, None)
        if self.ledger is not None:
            rec = await asyncio.to_thread(self.ledger.find_task, task_id, self.adapter.name)
            entry = LedgerEntry(self.ledger, rec.id if rec else await asyncio.to_thread(
                self.ledger.create_collect, self.adapter.name, self.endpoint.base_url, task_id))
            if req is None and rec is not None and rec.mode:
                req = GenerationRequest(mode=rec.mode, version=rec.version, prompt=rec.prompt,
                                        resolution=rec.params.get("resolution", "720p"),
                                        duration_s=rec.params.get("duration_s"))
        req = req or GenerationRequest(mode="t2v", prompt="(collected)")
        est = estimate(req, self.adapter.name, self.adapter.prices)
        watch.estimate = est
        async with self._transport() as transport:
            # Cancelling a collect only stops waiting: the job may belong to another run or another machine.
            return await self._follow(transport, task_id, req, est, opts, watch, entry, cancel_job=False)

    async def _record_new(self, req: GenerationRequest, est: Estimate, guard: SpendGuard | None) -> str | None:
        """The new job's ledger record. With a spend limit, the budget is checked again inside the ledger's write
        transaction: jobs recorded meanwhile (a batch, another node, another process) are counted, and no other
        job is recorded between this check and this record."""
        if self.ledger is None:
            if guard is not None:
                guard.check(est, None)
            return None
        admit = None if guard is None else functools.partial(guard.check, est)
        return await asyncio.to_thread(self.ledger.create, req, self.adapter.name, self.endpoint.base_url, est.usd,
                                       admit=admit)

    # --- a submit whose answer was lost ------------------------------------------------------------
    async def _find_lost_submit(self, req: GenerationRequest, key: dedupe.Key, watch: Watch,
                                uncertain: SubmitUncertain) -> dedupe.Attach:
        """The job of an earlier identical submit that got no answer, from the host's task list; raises
        SubmitUncertain (saying what the list showed) when it cannot be told."""
        provider, base_url, fingerprint = key
        prior = None if self.ledger is None else await asyncio.to_thread(
            self.ledger.find_fingerprint, fingerprint, provider, base_url)
        if prior is None or not self.adapter.lists_tasks:
            raise uncertain
        async with self._transport() as transport:
            task_id = await self._search_lost(transport, req, prior.created_at, prior.id, watch, uncertain)
        await LedgerEntry(self.ledger, prior.id).mark(LedgerStatus.SUBMITTED, task_id=task_id)
        return dedupe.Attach(task_id, prior.id)

    async def _search_lost(self, transport: Transport, req: GenerationRequest, sent_at: float,
                           record: str | None, watch: Watch, uncertain: SubmitUncertain) -> str:
        watch.update(Phase.ATTACHING, detail=f"the submit's answer was lost; looking for the job in "
                                             f"{self.adapter.caps.display_name}'s task list")
        try:
            found = await reconcile.search(self.adapter, transport, req, sent_at, self.ledger, record)
        except ProviderError as exc:
            raise SubmitUncertain(f"{uncertain} Its task list could not be read either ({exc}); the next run "
                                  f"of the same request looks again.") from None
        if found.found is None:
            raise found.refusal(uncertain, self.adapter.caps.display_name)
        log.info("%s: the lost submit's job is task %s (from the task list)", self.adapter.name, found.found)
        watch.note = "the submit's answer was lost; found its job in the host's task list, nothing sent again"
        return found.found

    # --- the ways to a result other than a new job -----------------------------------------------
    async def _reuse(self, prior, req: GenerationRequest, opts: RunOptions, watch: Watch) -> JobResult:
        """An identical job's finished video (shown unchanged by dedupe), handed back without submitting
        anything; copied when the user named another output."""
        from .media import probe_video

        saved = SavedVideo(prior.local_path, prior.size_bytes, prior.sha256)
        if opts.out_path:
            saved = await asyncio.to_thread(copy_saved, saved, target_path(
                opts.out_path, opts.out_dir, self.adapter.name, req.mode, prior.task_id or ""))
        path = saved.path
        watch.task_id = prior.task_id
        watch.update(Phase.REUSED, detail=f"same request as task {prior.task_id}; nothing submitted or billed")
        info = await asyncio.to_thread(probe_video, path)
        return JobResult(path=path, task_id=prior.task_id or "", provider=self.adapter.name, mode=req.mode,
                         version=req.version, billed_seconds=0.0, cost_usd=0.0, video_url=prior.video_url,
                         ledger_id=prior.id, width=info.width, height=info.height, duration_s=info.duration_s,
                         fps=info.fps, has_audio=info.has_audio, origin=Origin.REUSED)

    async def _attach(self, task_id: str, ledger_id: str | None, req: GenerationRequest, est: Estimate,
                      opts: RunOptions, watch: Watch) -> JobResult:
        """Follow a job an identical request already paid for, instead of submitting again."""
        if ledger_id is None and self.ledger is not None:
            rec = await asyncio.to_thread(self.ledger.find_task, task_id, self.adapter.name)
            ledger_id = rec.id if rec else None
        watch.task_id = task_id
        # Kept on every later progress line: the phase itself passes too fast to be seen.
        watch.note = "re-attached to an identical job already paid for; nothing submitted again"
        watch.update(Phase.ATTACHING)
        async with self._transport() as transport:
            result = await self._follow(transport, task_id, req, est, opts, watch, LedgerEntry(self.ledger, ledger_id))
        result.origin = Origin.ATTACHED
        return result

    async def _refetch(self, earlier: dedupe.Refetch, req: GenerationRequest, est: Estimate, opts: RunOptions,
                       watch: Watch) -> JobResult:
        """The identical job finished but its saved file is gone or changed: download its result again from
        the provider (asking for the task gives a current URL); nothing is submitted or billed."""
        prior = earlier.record
        watch.task_id = prior.task_id
        watch.note = f"an identical earlier job's video is gone ({earlier.why}); fetching its result again, " \
                     f"nothing submitted"
        watch.update(Phase.REFETCHING)
        try:
            async with self._transport() as transport:
                result = await self._follow(transport, prior.task_id, req, est, opts, watch,
                                            LedgerEntry(self.ledger, prior.id), cancel_job=False)
        except (DownloadError, ProviderError) as exc:
            if isinstance(exc, ProviderError) and exc.kind != "not_found":
                raise                   # e.g. a bad key: the user fixes that, the result may still be there
            raise VideoGone(dedupe.gone_message(prior, earlier.why, f"the provider no longer has it ({exc})")) \
                from None
        result.origin = Origin.REFETCHED
        result.extra["earlier_file"] = earlier.why
        return result

    async def _follow(self, transport: Transport, task_id: str, req: GenerationRequest, est: Estimate,
                      opts: RunOptions, watch: Watch, entry: LedgerEntry, cancel_job: bool = True,
                      submitted: float | None = None) -> JobResult:
        """From a task id to a verified local video: poll until finished, download, record it done.
        submitted: when this run's submit was answered (time.monotonic()); its time is then forecast from the
        ledger's history. None (attach, collect, refetch): the job's age is unknown."""
        from .media import probe_video

        forecast = None
        if submitted is not None:       # the ledger is SQLite: read off the event loop
            model = await asyncio.to_thread(DurationModel.from_ledger, self.ledger, self.adapter)
            forecast = model.forecast(req, opts.expected_s)
            watch.expected = watch.elapsed() + forecast.total.quantile(0.5)
        else:
            watch.expected = opts.expected_s or self.adapter.expected_seconds(req)
        later = Later.of(self.endpoint)
        follower = Follower(self.adapter, transport, task_id, watch, entry, timeout_s=opts.timeout_s,
                            queue_timeout_s=opts.queue_timeout_s, policy=opts.poll, forecast=forecast, later=later,
                            cancel_job=cancel_job, submitted=submitted)
        watch.start_ticker()
        try:
            status = await follower.until_finished()
            saved = await download_video(
                transport, status.video_url, target_path(opts.out_path, opts.out_dir, self.adapter.name, req.mode,
                                                         task_id),
                watch, entry, task_id=task_id, later=later, attempts=opts.download_attempts,
                max_bytes=opts.max_download_bytes, sink=opts.frames)
        finally:
            await watch.stop_ticker()
        info = await asyncio.to_thread(probe_video, saved.path)
        billed, cost = self._charges(status, est)
        await entry.mark(LedgerStatus.DONE, local_path=saved.path, size_bytes=saved.size_bytes, sha256=saved.sha256,
                         billed_seconds=billed, cost_usd=cost, usage=status.usage)
        watch.update(Phase.DONE, detail=saved.path)
        return JobResult(path=saved.path, task_id=task_id, provider=self.adapter.name, mode=req.mode,
                         version=req.version,
                         billed_seconds=billed, cost_usd=cost, video_url=status.video_url, ledger_id=entry.id,
                         width=info.width, height=info.height, duration_s=info.duration_s, fps=info.fps,
                         has_audio=info.has_audio)

    @staticmethod
    def _charges(status: JobStatus, est: Estimate) -> tuple[float | None, float | None]:
        """(billed seconds, USD): what the host reported, else what the price table says."""
        billed = status.billed_seconds if status.billed_seconds is not None else est.billed_seconds
        cost = status.cost_usd
        if cost is None and billed is not None and est.usd_per_second is not None:
            cost = round(billed * est.usd_per_second, 4)
        return billed, cost

    def _transport(self) -> Transport:
        return Transport(self.endpoint.base_url, self.adapter.auth_headers(self.endpoint.key),
                         session=self._session, error_mapper=self.adapter.map_error,
                         reply_status=self.adapter.reply_status)
