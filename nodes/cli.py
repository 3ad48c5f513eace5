"""The `happyhorse` command: generate, estimate, jobs, providers, simulate, demo."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import sys
import time
from pathlib import Path

from .engine.errors import HappyHorseError, JobCancelled, ValidationError
from .engine import routing
from .engine.budget import SpendGuard, spend_summary
from .engine.fields import Fix, Surface
from .engine.ledger import Ledger
from .engine.pricing import check_price
from .engine.promptcheck import reference_warnings
from .engine.request import MODES, RESOLUTIONS, VERSIONS, GenerationRequest, MediaInput
from .engine.runner import JobRunner, Origin, Progress, RunOptions, check_request
from .engine.routing import AUTO
from .engine.uploads import AUTO as UPLOAD_AUTO
from .engine.uploads import UPLOAD_CHOICES
from .providers.registry import ADAPTERS, all_caps, configured, get_adapter, resolve_endpoint, resolve_for_task


# The CLI's words for the engine's fields (engine/fields.py), so errors name the options as typed.
CLI = Surface(
    names={"mode": "--mode", "version": "--version", "prompt": "--prompt", "first_frame": "--image",
           "reference_images": "--image", "reference_image": "--image", "source_video": "--video",
           "video": "--video", "resolution": "--resolution", "aspect_ratio": "--aspect-ratio",
           "duration_s": "--duration", "seed": "--seed", "watermark": "--watermark",
           "audio_setting": "--audio-setting", "source_video_duration_s": "--video-duration",
           "provider": "--provider", "base_url": "--base-url", "out_path": "--out", "out_dir": "--out-dir",
           "upload": "--upload"},
    fixes={Fix.SUPPLY: "add {name}", Fix.REMOVE: "drop {name}", Fix.REMOVE_ALL: "drop {name}",
           Fix.LEAVE_EMPTY: "leave out {name}", Fix.TURN_OFF: "leave out {name}"})


def _add_request_args(p: argparse.ArgumentParser, *, for_estimate: bool = False) -> None:
    p.add_argument("--provider", default="simulator", choices=[*ADAPTERS, AUTO],
                   help="who runs the job (default: the free local simulator); auto: the cheapest host you have a "
                        "key for that takes the request, failing over to the next if it refuses the job")
    p.add_argument("--version", default=None, choices=VERSIONS,
                   help="HappyHorse model version (default: the newest the provider offers for this mode)")
    p.add_argument("--mode", required=True, choices=MODES, help="t2v, i2v, r2v or edit (never guessed)")
    p.add_argument("--resolution", default="720p", type=str.lower, choices=RESOLUTIONS)
    p.add_argument("--aspect-ratio", default=None,
                   help="t2v and r2v (default 16:9); DashScope edit: optional, unset keeps the source shape")
    p.add_argument("--duration", type=int, default=None, help="seconds, 3-15 (default 5; not for edit)")
    if for_estimate:
        p.add_argument("--video-duration", type=float, default=None, metavar="S",
                       help="edit: the source video's length in seconds (instead of --video)")
        p.add_argument("--references", type=int, default=None, metavar="N",
                       help="r2v/edit: how many reference images (instead of --image; only the count matters)")
    p.add_argument("--prompt", default="", help="what the video shows")
    p.add_argument("--image", action="append", default=[], metavar="PATH_OR_URL",
                   help="i2v: the first frame; r2v/edit: reference images in order, named in the prompt as "
                        "[Image 1], [Image 2], ... or character1, character2, ...")
    p.add_argument("--video", default=None, metavar="PATH_OR_URL", help="edit: the source video")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--watermark", action=argparse.BooleanOptionalAction, default=False,
                   help="ask the provider for its watermark (always sent explicitly; default off)")
    p.add_argument("--audio-setting", choices=("auto", "origin"), default=None, help="edit only")
    p.add_argument("--base-url", default=None,
                   help="override the provider's base URL (region, proxy, or a simulator URL)")
    p.add_argument("--json", action="store_true", help="print a machine-readable result")


def _media(value: str, kind: str) -> MediaInput:
    if value.startswith(("http://", "https://", "data:", "oss://")):
        return MediaInput.from_url(value, kind)   # type: ignore[arg-type]
    if not os.path.isfile(value):
        raise HappyHorseError(f"--{'video' if kind == 'video' else 'image'} {value}: no such file")
    return MediaInput.from_path(value, kind)      # type: ignore[arg-type]


def default_version(provider: str, mode: str) -> str:
    """The newest version the provider offers for the mode (edit exists only on 1.0)."""
    caps = get_adapter(provider).caps
    offered = [v for v in sorted(VERSIONS, reverse=True) if caps.supports(v, mode)]
    return offered[0] if offered else VERSIONS[-1]


def request_from_args(a: argparse.Namespace) -> GenerationRequest:
    if a.version is None:
        a.version = routing.default_version(a.mode) if a.provider == AUTO else default_version(a.provider, a.mode)
    images = tuple(_media(v, "image") for v in a.image)
    first = images[0] if a.mode == "i2v" and images else None
    refs = images[1:] if a.mode == "i2v" else images
    return GenerationRequest(
        mode=a.mode, version=a.version, prompt=a.prompt, first_frame=first, reference_images=refs,
        source_video=_media(a.video, "video") if a.video else None, resolution=a.resolution,
        aspect_ratio=a.aspect_ratio, duration_s=a.duration, seed=a.seed, watermark=a.watermark,
        audio_setting=a.audio_setting)


class _ProgressPrinter:
    """One status line a second on stderr; rewritten in place on a terminal."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._last = ""

    def __call__(self, p: Progress) -> None:
        if self.quiet:
            return
        line = p.text()
        if line == self._last:
            return
        self._last = line
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty and not self.quiet and self._last:
            sys.stderr.write("\n")


def _cancel_flag() -> tuple[list[bool], callable]:
    flag = [False]

    def on_signal(signum, frame) -> None:
        if flag[0]:
            raise KeyboardInterrupt
        flag[0] = True
        sys.stderr.write("\nCancelling (press Ctrl-C again to quit at once)...\n")

    signal.signal(signal.SIGINT, on_signal)
    return flag, (lambda: flag[0])


def _warn(lines: list[str]) -> None:
    for line in lines:
        print(f"warning: {line}", file=sys.stderr)


def _auto_plan(a: argparse.Namespace, req: GenerationRequest) -> routing.RoutePlan:
    if a.base_url:
        raise HappyHorseError("--base-url names one host's address; with --provider auto set "
                              "HAPPYHORSE_<PROVIDER>_BASE_URL (or [base_urls] in the config) for each host instead")
    return routing.plan_route(req)


def fitted(req: GenerationRequest, a: argparse.Namespace) -> GenerationRequest:
    """--fit: inputs that break the provider's limits are repaired, each change said on stderr. Without it
    nothing is changed (and a refusal --fit could repair says so: see cmd_generate)."""
    from .engine.imageprep import apply_fixes, fit_all

    if a.fit is None:
        if a.fit_ratio:
            raise HappyHorseError("--fit-ratio W:H reframes images for --fit: give --fit crop or --fit pad with it")
        return req
    try:
        fixes = fit_all(a.fit, a.fit_ratio)
    except ValueError as exc:
        raise HappyHorseError(f"--fit-ratio: {exc}") from None
    req, notes = apply_fixes(req, get_adapter(a.provider).caps, fixes)
    for note in notes:                 # a change to the user's input is always said, even with --quiet
        print(f"fit: {note}", file=sys.stderr)
    return req


def cmd_generate(a: argparse.Namespace) -> int:
    from .engine.imageprep import with_fit_hint

    if a.provider == AUTO and a.fit is not None:
        raise HappyHorseError("--fit repairs inputs for one host's limits: name a --provider to use it")
    req = fitted(request_from_args(a), a) if a.provider != AUTO else request_from_args(a)
    opts = RunOptions(out_path=a.out, out_dir=a.out_dir, timeout_s=a.timeout, force_new=a.new, upload=a.upload,
                      spend_guard=SpendGuard.load(a.max_usd))
    ledger = Ledger()
    printer = _ProgressPrinter(quiet=a.quiet)
    _, is_cancelled = _cancel_flag()
    if a.provider == AUTO:
        plan = _auto_plan(a, req).require()
        _warn(reference_warnings(plan.chosen.request, get_adapter(plan.chosen.provider).caps))
        print(plan.why(), file=sys.stderr)
        work = routing.run_auto(plan, opts, ledger=ledger, on_progress=printer, is_cancelled=is_cancelled,
                                on_event=lambda line: print(f"\nauto: {line}", file=sys.stderr))
    else:
        try:
            # Refused before a key is needed, by the adapter as configured (a DashScope region's store, prices).
            check_request(req, configured(a.provider, base_url=a.base_url)[0], all_caps())
        except ValidationError as exc:
            if a.fit is not None:
                raise
            raise with_fit_hint(exc, "--fit", "add it to repair the inputs above (upscale, crop - or pad with --fit "
                                              "pad - and re-encode); inputs within the limits are not touched") from None
        _warn(reference_warnings(req, get_adapter(a.provider).caps))
        runner = JobRunner(resolve_endpoint(a.provider, base_url=a.base_url), ledger=ledger, all_caps=all_caps())
        work = runner.run(req, opts, on_progress=printer, is_cancelled=is_cancelled)
    try:
        result = asyncio.run(work)
    finally:
        printer.close()
    if a.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        cost = "free" if result.cost_usd == 0 else (f"{result.cost_usd:.2f} USD" if result.cost_usd is not None
                                                     else "cost unknown")
        how = {Origin.REUSED: "reused an identical earlier result, nothing billed; --new makes another",
               Origin.ATTACHED: "attached to the identical job paid for earlier, nothing submitted again",
               Origin.REFETCHED: f"an identical earlier job's video was gone ({result.extra.get('earlier_file')}); "
                                 f"its result was downloaded again, nothing billed"}.get(result.origin)
        host = f"{result.provider} " if a.provider == AUTO else ""
        print(f"Saved {result.path}  ({result.width}x{result.height}, {result.duration_s:.1f} s, "
              f"{host}task {result.task_id}, {cost}{'; ' + how if how else ''})")
    return 0


# Stands in for an input an estimate counts but never reads: the price does not depend on the pixels.
PLACEHOLDER = "https://placeholder.invalid/"


def estimate_request_from_args(a: argparse.Namespace) -> GenerationRequest:
    """The request to price: --image / --video are counted (a local --video is probed for its length only),
    or given as counts with --references N and --video-duration S. No file is read, nothing is uploaded."""
    if a.version is None:
        a.version = routing.default_version(a.mode) if a.provider == AUTO else default_version(a.provider, a.mode)
    if a.references is not None and (a.references < 0 or a.image[1 if a.mode == "i2v" else 0:]):
        raise HappyHorseError("--references N counts the reference images: give it instead of those --image "
                              "options, as a whole number 0 or more")

    def counted(kind: str, name: str) -> MediaInput:
        return MediaInput.from_url(PLACEHOLDER + name, kind)     # type: ignore[arg-type]

    extra = len(a.image) - 1 if a.mode == "i2v" and a.image else len(a.image)
    refs = tuple(counted("image", f"reference{i + 1}") for i in range(
        a.references if a.references is not None else extra))
    seconds = a.video_duration
    if a.mode == "edit" and seconds is None:
        if a.video is None:
            raise HappyHorseError("An edit is billed on the source video's length: give --video-duration S "
                                  "(or --video with a local file)")
        if not os.path.isfile(a.video):
            raise HappyHorseError(f"--video {a.video}: no such file; for a URL give its length with "
                                  f"--video-duration S (an estimate does not download it)")
        from .engine.media import MediaError, probe_video

        try:
            seconds = probe_video(a.video).duration_s
        except MediaError as exc:
            raise HappyHorseError(f"--video {a.video} cannot be read as a video ({exc})") from None
    return GenerationRequest(
        mode=a.mode, version=a.version, prompt=a.prompt.strip() or "(price only)",   # the prompt is not priced
        first_frame=counted("image", "first_frame") if a.mode == "i2v" else None, reference_images=refs,
        source_video=counted("video", "source.mp4") if a.mode == "edit" or a.video else None,
        resolution=a.resolution, aspect_ratio=a.aspect_ratio, duration_s=a.duration, seed=a.seed,
        watermark=a.watermark, audio_setting=a.audio_setting, source_video_duration_s=seconds)


def cmd_estimate(a: argparse.Namespace) -> int:
    req = estimate_request_from_args(a)
    if a.provider == AUTO:
        plan = _auto_plan(a, req)
        if a.json:
            print(json.dumps(plan.as_dict(), indent=2))
            return 0
        print(plan.why() if plan.ranked else "No provider with a key takes this request:")
        for line in plan.table():
            print("  " + line)
        return 0 if plan.ranked else 2
    # The configured adapter: a DashScope region prices in its own rates (unknown ones say so).
    adapter = configured(a.provider, base_url=getattr(a, "base_url", None))[0]
    est = check_price(req, adapter, all_caps())
    if a.prompt.strip():
        _warn(reference_warnings(req, adapter.caps))
    if a.json:
        print(json.dumps(est.as_dict(), indent=2))
    else:
        print(est.summary())
        for line in est.lines:
            print("  " + line)
    return 0


def cmd_jobs(a: argparse.Namespace) -> int:
    ledger = Ledger()
    if a.jobs_cmd == "list":
        rows = ledger.recent(a.limit)
        if a.json:
            print(json.dumps([r.as_dict() for r in rows], indent=2))
            return 0
        if not rows:
            print(f"No jobs recorded yet ({ledger.path}).")
        for r in rows:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at))
            cost = f"{r.cost_usd:.2f} USD" if r.cost_usd is not None else "-"
            print(f"{when}  {r.provider:<10} {r.mode or '?':<5} {r.status:<15} {cost:>10}  task {r.task_id or '-'}"
                  f"  {r.local_path or ''}")
        return 0
    if a.jobs_cmd == "show":
        rec = ledger.get(a.id) or ledger.find_task(a.id)
        if rec is None:
            raise HappyHorseError(f"No job {a.id} in {ledger.path}")
        print(json.dumps(rec.as_dict(), indent=2))
        return 0
    # collect
    endpoint = resolve_for_task(ledger, a.task_id, a.provider, a.base_url)
    runner = JobRunner(endpoint, ledger=ledger, all_caps=all_caps())
    printer = _ProgressPrinter(quiet=a.quiet)
    _, is_cancelled = _cancel_flag()
    try:
        result = asyncio.run(runner.collect(a.task_id, opts=RunOptions(out_path=a.out, out_dir=a.out_dir),
                                            on_progress=printer, is_cancelled=is_cancelled))
    finally:
        printer.close()
    print(json.dumps(result.as_dict(), indent=2) if a.json else f"Saved {result.path}")
    return 0


def cmd_batch(a: argparse.Namespace) -> int:
    from .engine.batch import load_batch, run_batch

    guard = SpendGuard.load(a.max_usd)
    jobs = load_batch(a.file, a.out_dir)          # every line checked before anything is sent
    for job in jobs:
        _warn([f"line {job.line}: {w}" for w in job.warnings])
    _, is_cancelled = _cancel_flag()

    def say(line: str) -> None:
        if not a.quiet:
            print(line, file=sys.stderr, flush=True)

    summary = asyncio.run(run_batch(jobs, out_dir=a.out_dir, concurrency=a.concurrency, ledger=Ledger(),
                                    guard=guard, force_new=a.new, on_line=say, is_cancelled=is_cancelled))
    done, failed, cancelled = summary.count("done"), summary.count("failed"), summary.count("cancelled")
    print(f"{done} done, {failed} failed, {cancelled} cancelled; {summary.spent_usd:.2f} USD; results in "
          f"{summary.results_path}" + ("; run the same command again to finish (nothing is paid twice)"
                                        if failed or cancelled else ""))
    return 0 if done == len(summary.results) else 1


def cmd_spend(a: argparse.Namespace) -> int:
    summary = spend_summary(Ledger())
    if a.json:
        print(json.dumps(summary.as_dict(), indent=2))
        return 0
    for period in (summary.today, summary.month):
        limit = f" of {period.limit_usd:.2f} USD budget" if period.limit_usd is not None else " (no budget set)"
        unknown = f", plus {period.unknown_jobs} job(s) of unknown price" if period.unknown_jobs else ""
        print(f"{period.name.capitalize()}: {period.usd:.2f} USD{limit}{unknown}")
        for name, p in sorted(period.by_provider.items()):
            extra = f" + {p.unknown_jobs} of unknown price" if p.unknown_jobs else ""
            print(f"  {name:<10} {p.usd:>8.2f} USD  {p.jobs} job(s){extra}")
    print("Counts finished jobs' costs and the estimates of jobs still in flight; set limits under [budget] "
          "(daily_usd, monthly_usd) in the config file.")
    return 0


def cmd_providers(a: argparse.Namespace) -> int:
    rows = []
    for name, ad in ADAPTERS.items():
        for version, vc in ad.caps.versions.items():
            usd = [ad.prices.usd_per_second.get((version, res)) for res in RESOLUTIONS]
            credits = [ad.prices.credits_per_second.get((version, res)) for res in RESOLUTIONS]
            rows.append({"provider": name, "version": version, "modes": list(vc.modes),
                         "usd_per_second": dict(zip(RESOLUTIONS, usd)),
                         "credits_per_second": dict(zip(RESOLUTIONS, credits)),
                         "key_env": ad.caps.key_env or None,
                         "media": "data URI or URL" if ad.caps.accepts_data_uri else "public URL only"})
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0

    def pair(values: dict, none: str) -> str:
        if all(v is None for v in values.values()):
            return none
        if all(v == 0 for v in values.values()):
            return "free"
        return " / ".join("?" if v is None else f"{v:g}" for v in values.values())

    table = [("PROVIDER", "VERSION", "MODES", "USD/S 720P / 1080P", "CREDITS/S 720P / 1080P", "KEY", "MEDIA")]
    table += [(r["provider"], r["version"], ",".join(r["modes"]), pair(r["usd_per_second"], "unpublished"),
               pair(r["credits_per_second"], "-"), r["key_env"] or "none", r["media"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def cmd_simulate(a: argparse.Namespace) -> int:
    from .simulator import background
    from .simulator.core import SimTiming
    from .simulator.server import PREFIXES, SimulatorServer

    if a.stop:
        print(f"Stopped the simulator at {background.stop()}.", file=sys.stderr)
        return 0
    if a.background:
        url, already = background.start(["--port", str(a.port), "--queue-s", str(a.queue_s),
                                         "--process-s", str(a.process_s)] + (["--control"] if a.control else []))
        print(url, flush=True)
        print(f"{'Already running' if already else 'Serving'} in the background on {url}; "
              f"`happyhorse simulate --stop` stops it.", file=sys.stderr)
        return 0
    # Ctrl-C and SIGTERM are taken by sigwait below, in every thread (the server's inherits this mask), so the
    # server always stops cleanly and removes its videos.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        server = SimulatorServer(port=a.port, timing=SimTiming(a.queue_s, a.process_s),
                                 control=a.control).start()
    except OSError as exc:
        raise HappyHorseError(f"--port {a.port}: cannot serve there ({exc.strerror or exc}); choose another port, "
                              f"or --port 0 for a free one") from None
    print(server.url, flush=True)
    for name, prefix in PREFIXES.items():
        print(f"  {name:<10} {server.url}{prefix}", file=sys.stderr)
    print("Serving on 127.0.0.1; Ctrl-C stops.", file=sys.stderr, flush=True)
    signal.sigwait({signal.SIGINT, signal.SIGTERM})
    server.stop()
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(a.out_dir), as_json=a.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="happyhorse", description="HappyHorse video generation, any provider.",
                                     epilog="Start with `happyhorse demo` (free, offline) or `happyhorse generate "
                                            "--mode t2v --prompt \"a horse on a beach\"`; "
                                            "`happyhorse COMMAND --help` for a command's options.")
    parser.add_argument("--version", action="version", version=f"happyhorse {package_version()}")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    g = sub.add_parser("generate", help="make a video")
    _add_request_args(g)
    g.add_argument("--out", default=None, help="where to write the MP4")
    g.add_argument("--out-dir", default="happyhorse_output", help="folder for the MP4 when --out is not given")
    g.add_argument("--timeout", type=float, default=1800.0, help="seconds of running time before giving up")
    g.add_argument("--quiet", action="store_true", help="no progress lines")
    g.add_argument("--new", action="store_true",
                   help="always submit a new paid job (by default an identical earlier request is reused, or "
                        "attached to if still running)")
    g.add_argument("--fit", nargs="?", const="crop", choices=("crop", "pad"), default=None,
                   help="repair inputs that break the provider's limits: upscale small images, bring a refused "
                        "shape into range (crop, the default, or pad), re-encode images and videos that break a "
                        "format, size, frame-rate, length or byte limit. Inputs within the limits are not touched; "
                        "every change is reported")
    g.add_argument("--fit-ratio", default=None, metavar="W:H",
                   help="with --fit: crop or pad images to this ratio (e.g. 16:9) instead of only into range")
    g.add_argument("--max-usd", type=float, default=None, metavar="USD",
                   help="refuse (before sending anything) when the estimate is above this; also when the price is "
                        "unknown. Daily / monthly budgets: [budget] in the config file")
    g.add_argument("--upload", default=UPLOAD_AUTO, choices=UPLOAD_CHOICES,
                   help="how local files reach the provider: auto (data URI if accepted, else the provider's own "
                        "store, else your S3 bucket; see docs/uploads.md) or force one")
    g.set_defaults(func=cmd_generate)

    e = sub.add_parser("estimate", help="price a video without making it")
    _add_request_args(e, for_estimate=True)
    e.set_defaults(func=cmd_estimate)

    j = sub.add_parser("jobs", help="the local job ledger: list, show and collect jobs",
                       description="Every job is recorded (task id first) in the ledger before polling starts, so "
                                   "it can be listed, inspected and collected again after a crash or a timeout.")
    jsub = j.add_subparsers(dest="jobs_cmd", required=True, metavar="{list,show,collect}")
    jl = jsub.add_parser("list", help="the most recent jobs, newest first",
                         description="The most recent jobs: time, provider, mode, status, cost, task id, file.")
    jl.add_argument("--limit", type=int, default=20, help="how many jobs to show (default 20)")
    jl.add_argument("--json", action="store_true", help="print the full records as JSON")
    js = jsub.add_parser("show", help="one job's full record (status history, URLs, file, cost)",
                         description="One job's full record as JSON.")
    js.add_argument("id", help="ledger id or task id")
    jc = jsub.add_parser("collect", help="wait for and download a job by its task id, without paying again",
                         description="Wait for a job submitted earlier (or elsewhere) and download its video. "
                                     "Nothing is submitted or paid again.")
    jc.add_argument("task_id", help="the provider's task id (see `happyhorse jobs list`)")
    jc.add_argument("--provider", default=None, choices=list(ADAPTERS),
                    help="where the job runs (default: the provider recorded with the task in the ledger)")
    jc.add_argument("--base-url", default=None, help="override the provider's base URL")
    jc.add_argument("--out", default=None, help="where to write the MP4")
    jc.add_argument("--out-dir", default="happyhorse_output", help="folder for the MP4 when --out is not given")
    jc.add_argument("--json", action="store_true", help="print a machine-readable result")
    jc.add_argument("--quiet", action="store_true", help="no progress lines")
    j.set_defaults(func=cmd_jobs)

    b = sub.add_parser("batch", help="run many jobs from a JSONL file (one generate request per line)")
    b.add_argument("file", help="one JSON object per line with generate's option names: provider, mode, prompt, "
                                "image, video, version, resolution, aspect_ratio, duration, seed, watermark, ...")
    b.add_argument("--concurrency", type=int, default=4, help="jobs in flight at once (each host's own limit "
                                                              "applies too; default 4)")
    b.add_argument("--out-dir", default="happyhorse_batch", help="videos (line-0001.mp4, ...) and results.jsonl")
    b.add_argument("--max-usd", type=float, default=None, metavar="USD",
                   help="refuse the batch if the jobs still to pay for add up to more than this")
    b.add_argument("--new", action="store_true", help="submit every line anew (by default finished lines are "
                                                      "reused and in-flight ones followed)")
    b.add_argument("--quiet", action="store_true", help="no progress lines")
    b.set_defaults(func=cmd_batch)

    sp = sub.add_parser("spend", help="today's and this month's spend per provider, against the [budget] limits")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_spend)

    pv = sub.add_parser("providers", help="list providers, versions, modes, prices and keys")
    pv.add_argument("--json", action="store_true")
    pv.set_defaults(func=cmd_providers)

    s = sub.add_parser("simulate", help="serve the simulator on 127.0.0.1",
                       description="Serve every simulated host on 127.0.0.1 and print the base URL first. "
                                   "In the foreground Ctrl-C stops it; --background returns at once "
                                   "(URL=$(happyhorse simulate --background)) and --stop stops that one.")
    s.add_argument("--port", type=int, default=0, help="0 picks a free port")
    s.add_argument("--queue-s", type=float, default=0.5, help="seconds each job waits in the queue")
    s.add_argument("--process-s", type=float, default=2.0, help="seconds each job runs, at least")
    how = s.add_mutually_exclusive_group()
    how.add_argument("--background", action="store_true",
                     help="start it in the background, print its URL and return (reuses one already running)")
    how.add_argument("--stop", action="store_true", help="stop the background simulator")
    s.add_argument("--control", action="store_true",
                   help="serve the control API /_sim/* (faults, timing, stats, blobs) for tests and benchmarks")
    s.set_defaults(func=cmd_simulate)

    d = sub.add_parser("demo", help="make sample videos on the built-in simulator (no key, no network)")
    d.add_argument("--out-dir", default="demo_output")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_demo)
    return parser


def configure_logging() -> None:
    """HAPPYHORSE_LOG (debug | info | warning | error) sets the pack's own loggers only: every other library
    stays at WARNING (botocore's DEBUG would print session tokens and signed requests)."""
    level = getattr(logging, os.environ.get("HAPPYHORSE_LOG", "warning").upper(), None)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    logging.getLogger("happyhorse").setLevel(level if isinstance(level, int) else logging.WARNING)


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("comfyui-happyhorse")
    except PackageNotFoundError:       # run from a checkout that was not pip-installed
        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        found = re.search(r'^version = "([^"]+)"', pyproject.read_text(), re.M) if pyproject.is_file() else None
        return found.group(1) if found else "unknown"


# The shell's convention for "stopped by Ctrl-C" (128 + SIGINT).
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141      # 128 + SIGPIPE, as a shell reports a command whose reader went away


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    configure_logging()
    try:
        return args.func(args)
    except JobCancelled as exc:        # the first Ctrl-C: the job was stopped (and cancelled where possible)
        print(f"Stopped: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except HappyHorseError as exc:
        print(f"error: {exc.render(CLI)}", file=sys.stderr)
        return 2
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:          # Ctrl-C outside a job, or the second Ctrl-C
        print("\nInterrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:            # `happyhorse providers | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # so the exit flush cannot fail again
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
