"""Protocol-neutral heart of the simulator: jobs, timing, rendering, media fetching, counters, faults.

Each host's protocol module (protocols/*.py) validates requests the way that host does, turns them into a
JobSpec, and renders JobView states in that host's words. Everything else lives here, once.
"""
from __future__ import annotations

import base64
import binascii
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from ..engine.http import is_loopback
from ..engine.media import probe_video_bytes
from .renders import RenderCache, clip_key
from .video import ClipSpec, output_size, render_clip, size_for_image


@dataclass
class SimTiming:
    queue_s: float = 0.5        # time spent queued (cancellable at DashScope)
    process_s: float = 2.0      # time spent running, at least; rendering may take longer


@dataclass
class JobSpec:
    provider: str
    mode: str
    version: str
    prompt: str
    resolution: str                       # "720p" | "1080p"
    aspect_ratio: str | None = None
    duration_s: float = 5
    seed: int = 0
    watermark: bool = False
    audio_setting: str = "auto"
    first_frame: bytes | None = None
    reference_images: list[bytes] = field(default_factory=list)
    source_video: bytes | None = None
    model: str = ""


@dataclass
class SimJob:
    id: str
    spec: JobSpec
    created: float
    timing: SimTiming
    width: int = 0
    height: int = 0
    out_seconds: float = 0.0
    in_seconds: float = 0.0
    render: Future | None = None
    canceled: bool = False
    fail_reason: str | None = None        # set by fault injection: the job fails with this reason
    stuck: bool = False                   # fault: stays queued forever
    finished_at: float | None = None
    polls: int = 0
    downloads: int = 0
    rendered_at: float | None = None      # wall clock when the MP4 was ready
    created_wall: float = field(default_factory=time.time)


@dataclass(frozen=True)
class JobView:
    state: str                            # queued | running | succeeded | failed | canceled
    job: SimJob
    error: str = ""
    elapsed: float = 0.0

    @property
    def progress(self) -> float:
        total = self.job.timing.queue_s + self.job.timing.process_s
        return 1.0 if self.state == "succeeded" else min(0.99, self.elapsed / total if total else 0.0)


class SimMediaError(Exception):
    pass


class _Dated(dict):
    """A dict that remembers when each key was set, so entries past their lifetime can be dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.set_at: dict[Any, float] = {}

    def __setitem__(self, key: Any, value: Any) -> None:
        self.set_at[key] = time.time()
        super().__setitem__(key, value)

    def drop_older_than(self, moment: float) -> None:
        for key in [k for k, t in self.set_at.items() if t < moment]:
            self.pop(key, None)
            del self.set_at[key]


WORKDIR_PREFIX = "happyhorse-sim-"
RENDERS = RenderCache(WORKDIR_PREFIX)    # clips by request, shared by every simulator in this process
KEEP_S = 3600.0     # how long a finished job (its MP4, its status) and an uploaded file stay; hosts keep ~24 h


class SimCore:
    """keep_s: jobs (with their input bytes and MP4) and uploads older than this are dropped (a poll then says
    the task is unknown, as a host says after its retention time). The temporary folder of videos is removed by close(); one left behind by
    a process that died is removed by the next SimCore on this machine."""

    def __init__(self, timing: SimTiming | None = None, workdir: str | None = None, keep_s: float = KEEP_S):
        self.timing = timing or SimTiming()
        self.keep_s = keep_s
        self._own_workdir = workdir is None
        if self._own_workdir:
            _remove_orphaned_workdirs()
        self.workdir = workdir or tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-")
        self.jobs: dict[str, SimJob] = {}
        self.submissions: Counter[str] = Counter()
        self.requests: dict[str, deque] = defaultdict(lambda: deque(maxlen=200))
        self.faults: dict[str, deque] = defaultdict(deque)   # per provider: queued fault dicts
        self.blobs: dict[str, tuple[bytes, str]] = _Dated()          # uploaded objects (provider stores)
        self.public_blobs: dict[str, tuple[bytes, str]] = _Dated()   # /_sim/blobs: a stand-in public file host
        self.blob_downloads: Counter[str] = Counter()
        # An account's limit of jobs at once per host (/_sim/limits); a submit over it is answered 429.
        self.job_limits: dict[str, int] = {}
        self.peak_jobs: Counter[str] = Counter()       # most unfinished jobs a host had at once
        self.refused_busy: Counter[str] = Counter()    # submits answered 429 for the limit above
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sim-render")
        self._lock = threading.Lock()

    # --- bookkeeping -------------------------------------------------------------------------------
    def record_request(self, provider: str, method: str, path: str, headers: dict, body: Any) -> None:
        safe_headers = {k: ("***" if k.lower() in ("authorization", "x-api-key") else v) for k, v in headers.items()}
        self.requests[provider].append({"method": method, "path": path, "headers": safe_headers, "body": body,
                                        "time": time.time()})

    def take_fault(self, provider: str, stage: str) -> dict | None:
        """Pop the next injected fault for this provider and stage (submit | poll | download | job)."""
        queue = self.faults[provider]
        for i, fault in enumerate(queue):
            if fault.get("stage") == stage:
                del queue[i]
                return fault
        return None

    # --- jobs --------------------------------------------------------------------------------------
    def create_job(self, spec: JobSpec) -> SimJob:
        self.prune()
        job = SimJob(id=str(uuid.uuid4()), spec=spec, created=time.monotonic(), timing=SimTiming(
            self.timing.queue_s, self.timing.process_s))
        self._size_job(job)
        fault = self.take_fault(spec.provider, "job")
        if fault:
            if fault.get("kind") == "fail":
                job.fail_reason = str(fault.get("reason") or "simulated failure")
            elif fault.get("kind") == "stuck":
                job.stuck = True
            elif fault.get("kind") == "slow":
                job.timing.process_s += float(fault.get("seconds", 5))
                job.timing.queue_s += float(fault.get("queue_seconds", 0))
        with self._lock:
            self.jobs[job.id] = job
            self.submissions[spec.provider] += 1
            self.peak_jobs[spec.provider] = max(self.peak_jobs[spec.provider], self.unfinished(spec.provider))
        if job.fail_reason is None and not job.stuck:
            job.render = self._pool.submit(self._render, job)
        return job

    def _size_job(self, job: SimJob) -> None:
        s = job.spec
        if s.mode == "i2v" and s.first_frame:
            from PIL import Image
            import io
            with Image.open(io.BytesIO(s.first_frame)) as im:
                job.width, job.height = size_for_image(s.resolution, im.width, im.height)
            job.out_seconds = float(s.duration_s)
        elif s.mode == "edit" and s.source_video:
            info = probe_video_bytes(s.source_video)      # the protocol module already checked it reads
            job.width, job.height = (output_size(s.resolution, s.aspect_ratio) if s.aspect_ratio
                                     else size_for_image(s.resolution, info.width, info.height))
            job.in_seconds = min(info.duration_s, 15.0)
            job.out_seconds = min(info.duration_s, 15.0)
        else:
            job.width, job.height = output_size(s.resolution, s.aspect_ratio or "16:9")
            job.out_seconds = float(s.duration_s)

    def _render(self, job: SimJob) -> str:
        s = job.spec
        clip = ClipSpec(width=job.width, height=job.height, duration_s=job.out_seconds, prompt=s.prompt, mode=s.mode,
                        first_frame=s.first_frame, reference_images=list(s.reference_images), seed=s.seed,
                        watermark=s.watermark, keep_source_audio=(s.audio_setting == "origin"),
                        label=f"simulated {s.provider} {s.model or s.mode}")
        out = os.path.join(self.workdir, f"{job.id}.mp4")
        tmp = out + ".tmp.mp4"
        RENDERS.produce(clip_key(clip, s.source_video), tmp, lambda path: self._render_new(clip, job, path))
        os.replace(tmp, out)
        job.rendered_at = time.time()
        return out

    def _render_new(self, clip: ClipSpec, job: SimJob, path: str) -> None:
        if not job.spec.source_video:
            render_clip(clip, path)
            return
        clip.source_video = os.path.join(self.workdir, f"{job.id}-src.mp4")
        try:
            with open(clip.source_video, "wb") as fh:
                fh.write(job.spec.source_video)
            render_clip(clip, path)
        finally:
            os.unlink(clip.source_video)

    def prune(self, now: float | None = None) -> list[str]:
        """Drop jobs (and their MP4s) and uploaded files older than keep_s; returns the dropped job ids."""
        now = time.time() if now is None else now
        cutoff = now - self.keep_s
        with self._lock:
            old = [j for j in self.jobs.values() if j.created_wall < cutoff and (j.render is None or j.render.done())]
            for job in old:
                del self.jobs[job.id]
        for job in old:
            path = os.path.join(self.workdir, f"{job.id}.mp4")
            if os.path.exists(path):
                os.unlink(path)
        for store in (self.blobs, self.public_blobs):
            store.drop_older_than(cutoff)
        return [j.id for j in old]

    def view(self, job_id: str) -> JobView | None:
        job = self.jobs.get(job_id)
        if job is None:
            return None
        job.polls += 1
        elapsed = time.monotonic() - job.created
        if job.canceled:
            return JobView("canceled", job, elapsed=elapsed)
        if job.stuck or elapsed < job.timing.queue_s:
            return JobView("queued", job, elapsed=elapsed)
        if job.fail_reason is not None:
            if elapsed < job.timing.queue_s + job.timing.process_s / 2:
                return JobView("running", job, elapsed=elapsed)
            return JobView("failed", job, error=job.fail_reason, elapsed=elapsed)
        if elapsed < job.timing.queue_s + job.timing.process_s or not job.render.done():
            return JobView("running", job, elapsed=elapsed)
        exc = job.render.exception()
        if exc is not None:
            return JobView("failed", job, error=f"rendering failed: {exc}", elapsed=elapsed)
        if job.finished_at is None:
            job.finished_at = time.time()
        return JobView("succeeded", job, elapsed=elapsed)

    def unfinished(self, provider: str) -> int:
        """Jobs of this host still queued or running (what a host's limit of jobs at once counts)."""
        now = time.monotonic()
        return sum(1 for j in list(self.jobs.values()) if j.spec.provider == provider and not j.canceled
                   and (j.stuck or now - j.created < j.timing.queue_s + (
                       j.timing.process_s / 2 if j.fail_reason is not None else j.timing.process_s)))

    def at_limit(self, provider: str) -> bool:
        """The account already has as many unfinished jobs at this host as its limit allows."""
        limit = self.job_limits.get(provider)
        if limit is None or self.unfinished(provider) < limit:
            return False
        self.refused_busy[provider] += 1
        return True

    def ready_at(self, job: SimJob) -> float | None:
        """Wall-clock moment the job became collectable (nominal time, or later if rendering lagged)."""
        if job.rendered_at is None:
            return None
        nominal = job.created_wall + job.timing.queue_s + job.timing.process_s
        return max(nominal, job.rendered_at)

    def cancel(self, job_id: str) -> bool:
        """Cancel a job that is still queued (DashScope's rule); False otherwise."""
        view = self.view(job_id)
        if view is None or view.state != "queued":
            return False
        view.job.canceled = True
        return True

    def video_path(self, job_id: str) -> str | None:
        job = self.jobs.get(job_id)
        if job is None or job.render is None or not job.render.done() or job.render.exception():
            return None
        return job.render.result()

    # --- media -------------------------------------------------------------------------------------
    async def fetch_media(self, url: str, *, allow_data_uri: bool = True, max_bytes: int = 100 << 20) -> bytes:
        if url.startswith("data:"):
            if not allow_data_uri:
                raise SimMediaError("data: URIs are not accepted; pass a public URL")
            try:
                header, payload = url.split(",", 1)
                if not header.endswith(";base64"):
                    raise SimMediaError("data URI must be base64-encoded")
                return base64.b64decode(payload, validate=True)
            except (ValueError, binascii.Error):
                raise SimMediaError("malformed data URI") from None
        if url.startswith("oss://"):
            blob = self.blobs.get(url[len("oss://"):])
            if blob is None:
                raise SimMediaError(f"no uploaded object at {url}")
            return blob[0]
        try:
            async with aiohttp.ClientSession() as session:
                current = url
                for _ in range(6):
                    # Every hop is checked: a redirect must not lead the fetch off this machine.
                    parts = urlsplit(current)
                    if parts.scheme not in ("http", "https"):
                        raise SimMediaError(f"unsupported URL scheme {parts.scheme!r}")
                    if not is_loopback(current):
                        raise SimMediaError(f"the simulator only fetches media from this machine, not "
                                            f"{parts.hostname or current}")
                    async with session.get(current, allow_redirects=False,
                                           timeout=aiohttp.ClientTimeout(total=30)) as resp:
                        if resp.status in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                            current = urljoin(current, resp.headers["Location"])
                            continue
                        if resp.status != 200:
                            raise SimMediaError(f"downloading {parts.path} failed: HTTP {resp.status}")
                        chunks: list[bytes] = []
                        total = 0
                        async for chunk in resp.content.iter_chunked(1 << 16):
                            total += len(chunk)
                            if total > max_bytes:
                                raise SimMediaError("media file too large")
                            chunks.append(chunk)
                        return b"".join(chunks)
                raise SimMediaError("the media URL redirected too many times")
        except aiohttp.ClientError as exc:
            raise SimMediaError(f"downloading media failed: {type(exc).__name__}") from None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _remove_orphaned_workdirs() -> None:
    """Video folders of simulators whose process is gone (killed before it could clean up)."""
    root = tempfile.gettempdir()
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        pid = name[len(WORKDIR_PREFIX):].split("-", 1)[0]
        if not name.startswith(WORKDIR_PREFIX) or not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
