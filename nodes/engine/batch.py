"""`happyhorse batch FILE.jsonl`: many jobs from one file, checked first, run side by side, safe to rerun.

One JSON object per line with the same keys as `happyhorse generate`'s options (`provider`, `mode`, `prompt`,
`image` (one path/URL or a list), `video`, `version`, `resolution`, `aspect_ratio`, `duration`, `seed`,
`watermark`, `audio_setting`, `upload`, `out`); dashes or underscores both work. Relative paths are read from
the batch file's folder. Blank lines and lines starting with `#` are skipped.

- Every line is checked (and priced) before anything is sent; all problems are reported at once by line number.
- Jobs run `concurrency` at a time; a host at its own limit answers 429 and the job waits for it (submit.py).
- The budget applies to the batch as a whole: `max_usd` caps the sum of the jobs still to pay for, and that sum
  must fit what is left of the daily / monthly budget; each submit is checked again as it happens.
- Rerunning the same file after a crash or Ctrl-C submits nothing twice: the runner reuses a finished identical
  job's video and attaches to one still in flight (the ledger remembers both).
- results.jsonl in the output folder: one object per line (line, status, path, task_id, provider, cost_usd,
  origin, error), rewritten as jobs finish, so it is current even if the batch is stopped.
"""
from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .budget import NOT_BILLED, SpendGuard
from .config import Settings
from .errors import ConfigError, HappyHorseError, JobCancelled, ValidationError
from .ledger import Ledger
from .progress import Phase
from .promptcheck import reference_warnings
from .request import MODES, RESOLUTIONS, VERSIONS, GenerationRequest, MediaInput
from .routing import AUTO, Candidate, RoutePlan, plan_route, run_auto
from .runner import JobResult, JobRunner, RunOptions, check_request
from .uploads import AUTO as UPLOAD_AUTO
from .uploads import UPLOAD_CHOICES

RESULTS_FILE = "results.jsonl"
DEFAULT_PROVIDER = "simulator"          # as `happyhorse generate`
KEYS = ("provider", "mode", "version", "prompt", "image", "video", "resolution", "aspect_ratio", "duration",
        "seed", "watermark", "audio_setting", "upload", "out")


class BatchInvalid(HappyHorseError):
    """One or more lines of a batch file are wrong; nothing was sent."""


@dataclass
class BatchJob:
    line: int
    provider: str                       # as written: a provider name or "auto"
    out_path: str
    upload: str
    plan: RoutePlan | None = None       # provider auto
    candidate: Candidate | None = None  # the host it runs at first (auto: the chosen one)
    warnings: list[str] = field(default_factory=list)

    @property
    def estimate_usd(self) -> float | None:
        return self.candidate.estimate.usd if self.candidate and self.candidate.estimate else None


def load_batch(path: str | Path, out_dir: str | Path, settings: Settings | None = None) -> list[BatchJob]:
    """Read and check every line; raises BatchInvalid naming each bad line. Sends nothing."""
    path = Path(path).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BatchInvalid(f"Cannot read the batch file {path}: {exc.strerror or exc}") from None
    settings = settings or Settings.load()
    jobs: list[BatchJob] = []
    errors: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            jobs.append(_job_from_line(number, raw, path.parent, Path(out_dir), settings))
        except ValidationError as exc:
            errors.append(f"line {number}: refused before sending ({exc.provider}):"
                          + "".join(f"\n    - {v}" for v in exc.violations))
        except HappyHorseError as exc:
            errors.append(f"line {number}: " + str(exc).replace("\n", "\n    "))
    if errors:
        raise BatchInvalid(f"{path}: {len(errors)} line(s) need fixing; nothing was sent:\n" + "\n".join(errors))
    if not jobs:
        raise BatchInvalid(f"{path} has no jobs (one JSON object per line)")
    return jobs


def _job_from_line(number: int, raw: str, base: Path, out_dir: Path, settings: Settings) -> BatchJob:
    from ..providers.registry import ADAPTERS, configured, get_adapter, resolve_endpoint

    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise HappyHorseError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise HappyHorseError("each line must be a JSON object like {\"mode\": \"t2v\", \"prompt\": \"...\"}")
    d = {k.replace("-", "_"): v for k, v in data.items()}
    unknown = [k for k in d if k not in KEYS]
    if unknown:
        raise HappyHorseError(f"unknown key {', '.join(map(repr, unknown))}; use {', '.join(KEYS)}")
    provider = _choice(d, "provider", [*ADAPTERS, AUTO], DEFAULT_PROVIDER)
    mode = _choice(d, "mode", MODES, None)
    if mode is None:
        raise HappyHorseError(f"mode is required: one of {', '.join(MODES)} (never guessed)")
    version = _choice(d, "version", VERSIONS, None)
    if version is None:
        from .routing import default_version as auto_version

        caps = None if provider == AUTO else get_adapter(provider).caps
        offered = [v for v in sorted(VERSIONS, reverse=True) if caps is None or caps.supports(v, mode)]
        version = auto_version(mode) if provider == AUTO else (offered[0] if offered else VERSIONS[-1])
    images = d.get("image", [])
    images = [images] if isinstance(images, str) else images
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise HappyHorseError("image must be a path or URL, or a list of them")
    media = [_media(i, "image", base) for i in images]
    first = media[0] if mode == "i2v" and media else None
    refs = tuple(media[1:] if mode == "i2v" else media)
    video = d.get("video")
    if video is not None and not isinstance(video, str):
        raise HappyHorseError("video must be a path or URL")
    req = GenerationRequest(
        mode=mode, version=version, prompt=_typed(d, "prompt", str, ""), first_frame=first, reference_images=refs,
        source_video=_media(video, "video", base) if video else None,
        resolution=_choice(d, "resolution", RESOLUTIONS, "720p", lower=True),
        aspect_ratio=_typed(d, "aspect_ratio", str, None), duration_s=_typed(d, "duration", int, None),
        seed=_typed(d, "seed", int, None), watermark=_typed(d, "watermark", bool, False),
        audio_setting=_choice(d, "audio_setting", ("auto", "origin"), None))
    out = _typed(d, "out", str, None)
    out_path = str(base / out) if out and not os.path.isabs(out) else (out or str(out_dir / f"line-{number:04d}.mp4"))
    job = BatchJob(line=number, provider=provider, out_path=out_path,
                   upload=_choice(d, "upload", UPLOAD_CHOICES, UPLOAD_AUTO))
    if provider == AUTO:
        job.plan = plan_route(req, settings).require()
        job.candidate = job.plan.chosen
    else:
        try:
            adapter = configured(provider, settings)[0]       # a DashScope region's prices and store
        except ConfigError as exc:
            raise HappyHorseError(str(exc)) from None
        req, est = check_request(req, adapter)
        try:
            endpoint = resolve_endpoint(provider, settings)
        except ConfigError as exc:
            raise HappyHorseError(str(exc)) from None
        job.candidate = Candidate(provider, adapter.caps.display_name, 0, req, est, endpoint)
    job.warnings = reference_warnings(job.candidate.request, ADAPTERS[job.candidate.provider].caps)
    return job


def _typed(d: dict, key: str, kind: type, default: Any) -> Any:
    value = d.get(key, default)
    if value is None or value is default:
        return value
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise HappyHorseError(f"{key} must be a whole number, got {value!r}")
    if kind is not int and not isinstance(value, kind):
        raise HappyHorseError(f"{key} must be {'true or false' if kind is bool else 'text'}, got {value!r}")
    return value


def _choice(d: dict, key: str, options, default, lower: bool = False):
    value = d.get(key, default)
    if value is None or value is default:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key == "version":
        value = f"{float(value):.1f}"         # 1.1 written as a number
    if isinstance(value, str) and lower:
        value = value.lower()
    if value not in options:
        raise HappyHorseError(f"{key} {value!r} is not one of {', '.join(map(str, options))}")
    return value


def _media(value: str, kind: str, base: Path) -> MediaInput:
    if value.startswith(("http://", "https://", "data:", "oss://")):
        return MediaInput.from_url(value, kind)   # type: ignore[arg-type]
    path = Path(value) if os.path.isabs(value) else base / value
    if not path.is_file():
        raise HappyHorseError(f"{kind} {value}: no such file (relative paths are read from the batch file's folder)")
    return MediaInput.from_path(str(path), kind)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------- running


@dataclass
class LineResult:
    line: int
    status: str                         # done | failed | cancelled | waiting
    provider: str = ""
    path: str | None = None
    task_id: str | None = None
    cost_usd: float | None = None
    origin: str | None = None           # new | reused | attached
    error: str | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class BatchSummary:
    results: list[LineResult]
    results_path: str

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def spent_usd(self) -> float:
        return round(sum(r.cost_usd or 0.0 for r in self.results if r.status == "done"), 4)


def already_paid(job: BatchJob, ledger: Ledger) -> bool:
    """An identical request is finished or in flight at one of the hosts this line may run at: no new charge."""
    from .dedupe import RESULT_LIFETIME_S

    hosts = job.plan.ranked if job.plan is not None else (job.candidate,)
    for cand in hosts:
        rec = ledger.find_fingerprint(cand.request.fingerprint(), cand.provider, cand.endpoint.base_url)
        if rec is not None and rec.status not in NOT_BILLED and time.time() - rec.created_at <= RESULT_LIFETIME_S:
            return True
    return False


def check_batch_budget(jobs: list[BatchJob], guard: SpendGuard, ledger: Ledger) -> list[BatchJob]:
    """The batch as a whole must fit max_usd and the budgets. Returns the jobs that will be paid for."""
    to_pay = [j for j in jobs if not already_paid(j, ledger)]
    if not guard.active or not to_pay:
        return to_pay
    unknown = [j.line for j in to_pay if j.estimate_usd is None]
    lines = ", ".join(str(j.line) for j in to_pay)
    what = f"this batch ({len(to_pay)} job(s) to pay for, line(s) {lines})"
    if unknown:
        guard.check_usd(None, ledger, what, unknown_why=f"line(s) {', '.join(map(str, unknown))} have no "
                                                          f"published USD price")
    guard.check_usd(sum(j.estimate_usd or 0.0 for j in to_pay), ledger, what)
    return to_pay


async def run_batch(jobs: list[BatchJob], *, out_dir: str | Path, concurrency: int = 4, ledger: Ledger,
                    guard: SpendGuard | None = None, force_new: bool = False,
                    on_line: Callable[[str], None] = lambda s: None,
                    is_cancelled: Callable[[], bool] | None = None) -> BatchSummary:
    if concurrency < 1:
        raise HappyHorseError("--concurrency must be at least 1")
    guard = guard or SpendGuard()
    check_batch_budget(jobs, guard, ledger)
    # Each submit re-checks the budget periods (other runs may spend meanwhile); max_usd was the batch's own cap.
    per_job_guard = SpendGuard(max_usd=None, limits=guard.limits)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {j.line: LineResult(j.line, "waiting", provider=j.candidate.provider) for j in jobs}
    results_path = out / RESULTS_FILE
    cancelled = is_cancelled or (lambda: False)
    gate = asyncio.Semaphore(concurrency)
    running: set[int] = set()

    def totals() -> str:
        done = sum(r.status == "done" for r in results.values())
        failed = sum(r.status in ("failed", "cancelled") for r in results.values())
        spent = round(sum(r.cost_usd or 0.0 for r in results.values() if r.status == "done"), 4)
        waiting = len(results) - done - failed - len(running)
        return (f"total: {done} done, {len(running)} running, {failed} failed, {waiting} waiting | "
                f"spent so far {spent:.2f} USD")

    async def one(job: BatchJob) -> None:
        async with gate:
            res = results[job.line]
            if cancelled():
                res.status, res.error = "cancelled", "stopped before it started; nothing was sent"
                return
            running.add(job.line)
            last_phase = [""]

            def progress(p) -> None:
                # One line per phase change; the result line below says "done".
                if p.phase != last_phase[0] and p.phase != Phase.DONE:
                    last_phase[0] = p.phase
                    on_line(f"line {job.line:>4} {res.provider}: {p.text()}")

            def event(text: str) -> None:
                on_line(f"line {job.line:>4} auto: {text}")

            if job.plan is not None:
                on_line(f"line {job.line:>4} {job.plan.why()}")
            opts = RunOptions(out_path=job.out_path, out_dir=str(out), force_new=force_new, upload=job.upload,
                              spend_guard=per_job_guard)
            try:
                if job.plan is not None:
                    def attempt_at(cand: Candidate) -> None:
                        res.provider = cand.provider

                    result: JobResult = await run_auto(job.plan, opts, ledger=ledger, on_progress=progress,
                                                       is_cancelled=cancelled, on_event=event,
                                                       on_attempt=attempt_at)
                else:
                    runner = JobRunner(job.candidate.endpoint, ledger=ledger)
                    result = await runner.run(job.candidate.request, opts, on_progress=progress,
                                              is_cancelled=cancelled)
                res.status, res.provider, res.path, res.task_id = "done", result.provider, result.path, result.task_id
                res.cost_usd, res.origin = result.cost_usd, str(result.origin)
            except JobCancelled as exc:
                res.status, res.error, res.task_id = "cancelled", str(exc), exc.task_id
            except HappyHorseError as exc:
                res.status, res.error = "failed", str(exc)
                res.task_id = getattr(exc, "task_id", None)
            finally:
                running.discard(job.line)
            tail = res.path if res.status == "done" else res.error
            on_line(f"line {job.line:>4} {res.provider}: {res.status}"
                    + (f" ({res.origin})" if res.origin and res.origin != "new" else "") + f" | {tail}")
            on_line(totals())
            _write_results(results_path, results)

    await asyncio.gather(*(one(j) for j in jobs))
    _write_results(results_path, results)
    return BatchSummary([results[k] for k in sorted(results)], str(results_path))


def _write_results(path: Path, results: dict[int, LineResult]) -> None:
    """Atomically: a reader (or a rerun after a crash) never sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        for key in sorted(results):
            fh.write(json.dumps(results[key].as_dict()) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
