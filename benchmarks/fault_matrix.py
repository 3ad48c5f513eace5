"""Fault matrix: every injectable fault x every provider, against the simulator.

For each case it records whether the job recovered (a valid video) or was reported clearly (a HappyHorseError
whose message says what happened), how many submissions the simulator accepted (duplicates must be 0), and
whether any accepted job was lost (accepted by the host but neither delivered nor findable in the ledger).

    python -m benchmarks.fault_matrix            # prints the summary table and totals
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass

from happyhorse.engine.errors import (
    HappyHorseError,
    JobFailed,
    JobTimeout,
    SubmitUncertain,
)
from happyhorse.engine.ledger import Ledger
from happyhorse.engine.request import GenerationRequest
from happyhorse.engine.runner import JobRunner, RunOptions
from happyhorse.providers.registry import ADAPTERS, all_caps, resolve_endpoint
from happyhorse.simulator.core import SimTiming
from happyhorse.simulator.server import PREFIXES, SimulatorServer

from benchmarks.simctl import inject_fault, sim_stats


@dataclass(frozen=True)
class Fault:
    name: str
    stage: str
    spec: dict
    expect: str                    # "recover" | "report"
    queue_timeout_s: float | None = None


FAULTS: tuple[Fault, ...] = (
    Fault("poll 429 + Retry-After", "poll", {"kind": "status", "status": 429, "retry_after": 1}, "recover"),
    Fault("poll 500", "poll", {"kind": "status", "status": 500}, "recover"),
    Fault("poll 502", "poll", {"kind": "status", "status": 502}, "recover"),
    Fault("poll 503", "poll", {"kind": "status", "status": 503}, "recover"),
    Fault("poll connection dropped", "poll", {"kind": "drop"}, "recover"),
    Fault("poll slow answer (2 s)", "poll", {"kind": "slow", "seconds": 2}, "recover"),
    Fault("submit 429 + Retry-After", "submit", {"kind": "status", "status": 429, "retry_after": 1}, "recover"),
    Fault("submit 503 (refused)", "submit", {"kind": "status", "status": 503}, "report"),
    Fault("submit dropped before accept", "submit", {"kind": "drop"}, "report"),
    Fault("submit dropped after accept", "submit", {"kind": "drop_after"}, "report"),
    Fault("download truncated", "download", {"kind": "truncate"}, "recover"),
    Fault("download corrupt", "download", {"kind": "corrupt"}, "recover"),
    Fault("download 503", "download", {"kind": "status", "status": 503}, "recover"),
    Fault("job fails with reason", "job", {"kind": "fail", "reason": "simulated moderation failure"}, "report"),
    Fault("job queued forever", "job", {"kind": "stuck"}, "report", queue_timeout_s=2),
    Fault("job slow (+2 s)", "job", {"kind": "slow", "seconds": 2}, "recover"),
)

KEY_ENV_VALUE = "sk-fault-matrix-key"


@dataclass
class Outcome:
    provider: str
    fault: str
    expected: str
    result: str                    # recovered | reported | WRONG
    submissions: int
    duplicates: int
    lost: int
    message: str = ""


def matrix_providers() -> list[str]:
    """Every real host that has a simulated protocol (the 'simulator' provider is DashScope's protocol again)."""
    return [name for name in ADAPTERS if name in PREFIXES]


async def run_case(sim: SimulatorServer, provider: str, fault: Fault, seed: int, workdir: str) -> Outcome:
    adapter = ADAPTERS[provider]
    os.environ[adapter.caps.key_env] = KEY_ENV_VALUE
    ledger = Ledger(os.path.join(workdir, f"ledger-{provider}-{seed}.sqlite3"))
    runner = JobRunner(resolve_endpoint(provider, base_url=sim.base_url(provider)), ledger=ledger,
                       all_caps=all_caps())
    version = "1.1" if adapter.caps.supports("1.1", "t2v") else "1.0"
    req = GenerationRequest(mode="t2v", version=version, prompt="fault matrix", duration_s=3,
                            seed=seed if adapter.caps.supports_seed else None, resolution="720p")
    before = sim_stats(sim.url)["submissions"].get(provider, 0)
    case_started = time.time()
    inject_fault(sim.url, {"provider": provider, "stage": fault.stage, **fault.spec})
    result, message = "WRONG", ""
    try:
        # Hosts without a queued state (reAPI) report a stuck job as processing: the running timeout catches it.
        res = await runner.run(req, RunOptions(out_dir=workdir, queue_timeout_s=fault.queue_timeout_s,
                                               timeout_s=fault.queue_timeout_s or 1800.0, force_new=True))
        from happyhorse.engine.media import verify_video

        verify_video(res.path)
        result = "recovered"
    except HappyHorseError as exc:
        message = str(exc)
        clear = (len(message) > 30 and KEY_ENV_VALUE not in message
                 and (isinstance(exc, (SubmitUncertain, JobFailed, JobTimeout)) or "HTTP" in message
                      or adapter.caps.display_name in message or "submit" in message.lower()))
        result = "reported" if clear else "WRONG"
    stats = sim_stats(sim.url)
    after = stats["submissions"].get(provider, 0)
    if fault.stage == "download" and result == "recovered":
        # Recovery must come from detecting the bad download and fetching again, not from missing it.
        jobs = [j for j in stats["jobs"].values() if j["provider"] == provider]
        if max(j["downloads"] for j in jobs if j["created"] >= case_started) < 2:
            result, message = "WRONG", "the faulty download was not detected"
    accepted = after - before
    records = ledger.recent(50)
    # Lost: the host accepted a job, yet we neither delivered it nor hold a record that says so.
    known = sum(1 for r in records if r.task_id or r.status == "uncertain")
    lost = max(0, accepted - known)
    if result == "recovered" and fault.expect == "report" or result == "reported" and fault.expect == "recover":
        result = "WRONG"
    # Drain a fault the run never reached (e.g. a download fault after a failed job) so cases stay independent.
    sim.core.faults[provider].clear()
    return Outcome(provider, fault.name, fault.expect, result, accepted, max(0, accepted - 1), lost, message[:160])


async def run_matrix(providers: list[str] | None = None, faults: tuple[Fault, ...] = FAULTS) -> list[Outcome]:
    providers = providers or matrix_providers()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as workdir, \
            SimulatorServer(timing=SimTiming(queue_s=0.2, process_s=0.4)) as sim:
        async def one_provider(index: int, provider: str) -> list[Outcome]:
            # Faults are queued per provider, so providers run side by side; cases within one run in order.
            return [await run_case(sim, provider, fault, 1000 * (index + 1) + i, workdir)
                    for i, fault in enumerate(faults)]

        for batch in await asyncio.gather(*(one_provider(i, p) for i, p in enumerate(providers))):
            outcomes.extend(batch)
    return outcomes


def summarize(outcomes: list[Outcome]) -> dict:
    return {
        "providers": len({o.provider for o in outcomes}),
        "faults_tried": len(outcomes),
        "recovered": sum(o.result == "recovered" for o in outcomes),
        "reported_clearly": sum(o.result == "reported" for o in outcomes),
        "wrong": sum(o.result == "WRONG" for o in outcomes),
        "duplicated_submissions": sum(o.duplicates for o in outcomes),
        "lost_jobs": sum(o.lost for o in outcomes),
    }


def main() -> int:
    outcomes = asyncio.run(run_matrix(sys.argv[1:] or None))
    for o in outcomes:
        print(f"{o.provider:<10} {o.fault:<30} {o.result:<10} submissions={o.submissions} "
              f"dup={o.duplicates} lost={o.lost}")
    summary = summarize(outcomes)
    print(json.dumps(summary))
    return 0 if summary["wrong"] == 0 and summary["duplicated_submissions"] == 0 and summary["lost_jobs"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
