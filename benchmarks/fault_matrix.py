"""Fault matrix: every injectable fault x every provider, against the simulator.

For each case it records whether the job recovered (a valid video) or was reported clearly (a HappyHorseError
whose message says what happened), how many submissions the simulator accepted (duplicates must be 0), and
whether any accepted job was lost (accepted by the host but neither delivered nor findable in the ledger).

    python -m benchmarks.fault_matrix            # prints the summary table and totals

Routing cases (provider auto over two hosts): the first host down, out of credits or answering 503 must fail
over to the next; an uncertain submit at the first must stop there. Either way nothing is paid twice.
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
    only: tuple[str, ...] = ()     # the hosts that can show it (empty: every host)
    expect_if_listed: str = ""     # the expectation for hosts with a task list (a lost submit is found there)

    def applies_to(self, provider: str) -> bool:
        return not self.only or provider in self.only

    def expectation(self, adapter) -> str:
        return self.expect_if_listed if self.expect_if_listed and adapter.lists_tasks else self.expect


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
    Fault("submit dropped after accept", "submit", {"kind": "drop_after"}, "report", expect_if_listed="recover"),
    Fault("submit malformed reply after accept", "submit", {"kind": "malformed"}, "report", expect_if_listed="recover"),
    Fault("submit 400 echoing the key", "submit", {"kind": "echo", "status": 400}, "report"),
    Fault("poll gzip bomb", "poll", {"kind": "gzip_bomb", "megabytes": 100}, "report"),
    # What real hosts may do that their docs do not show (issue 10).
    Fault("submit answered 201 (another 2xx)", "submit", {"kind": "answer_status", "status": 201}, "recover"),
    Fault("submit 2xx without a task id", "submit", {"kind": "no_id"}, "report", expect_if_listed="recover"),
    Fault("poll undocumented status word", "poll", {"kind": "status_word", "word": "WARMING_UP"}, "recover"),
    Fault("poll 429 inside HTTP 200", "poll", {"kind": "status", "status": 429, "http_status": 200}, "recover",
          only=("apixo",)),
    Fault("poll 503 inside HTTP 200", "poll", {"kind": "status", "status": 503, "http_status": 200}, "recover",
          only=("apixo",)),
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
    """One fault at one host, on a simulator of its own (its faults, jobs and task list are this case's alone).
    Every case of a host sends the same request, so the simulator renders its clip once (simulator/renders.py)."""
    adapter = ADAPTERS[provider]
    os.environ[adapter.caps.key_env] = KEY_ENV_VALUE
    ledger = Ledger(os.path.join(workdir, f"ledger-{provider}-{_slug(fault.name)}.sqlite3"))
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
    expect = fault.expectation(adapter)
    if result == "recovered" and expect == "report" or result == "reported" and expect == "recover":
        result = "WRONG"
    # Drain a fault the run never reached (e.g. a download fault after a failed job) so cases stay independent.
    sim.core.faults[provider].clear()
    return Outcome(provider, fault.name, expect, result, accepted, max(0, accepted - 1), lost, message[:160])


async def run_matrix(providers: list[str] | None = None, faults: tuple[Fault, ...] = FAULTS) -> list[Outcome]:
    """Every case at once, each against its own simulator: a case's time is mostly its host's simulated waits."""
    providers = providers or matrix_providers()
    with tempfile.TemporaryDirectory() as workdir:
        async def one_case(index: int, provider: str, fault: Fault) -> Outcome:
            sim = await asyncio.to_thread(
                SimulatorServer(timing=SimTiming(queue_s=0.2, process_s=0.4), control=True).start)
            try:
                return await run_case(sim, provider, fault, 1000 * (index + 1), workdir)
            finally:
                await asyncio.to_thread(sim.stop)

        return list(await asyncio.gather(*(one_case(i, p, f) for i, p in enumerate(providers)
                                           for f in faults if f.applies_to(p))))


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower())


@dataclass(frozen=True)
class RoutingCase:
    name: str
    fault: dict | None             # injected at the first host; None with first_down
    expect: str                    # "recover" (at the next host) | "report" (stop: the first host may have it)
    first_down: bool = False


# Provider auto over two simulated hosts: APIXO is cheapest for this request (1.0, 720p, 3 s), DashScope next.
ROUTING_HOSTS = ("apixo", "dashscope")
ROUTING_CASES: tuple[RoutingCase, ...] = (
    RoutingCase("auto: first host down", None, "recover", first_down=True),
    RoutingCase("auto: first host out of credits", {"stage": "submit", "kind": "status", "status": 402}, "recover"),
    RoutingCase("auto: first host 503 on submit", {"stage": "submit", "kind": "status", "status": 503}, "recover"),
    RoutingCase("auto: first host uncertain", {"stage": "submit", "kind": "drop_after"}, "report"),
)


async def run_routing_case(sim: SimulatorServer, case: RoutingCase, index: int, workdir: str) -> Outcome:
    from happyhorse.engine.routing import plan_route, run_auto

    first, second = ROUTING_HOSTS
    for name in ROUTING_HOSTS:
        os.environ[ADAPTERS[name].caps.key_env] = KEY_ENV_VALUE
        os.environ[f"HAPPYHORSE_{name.upper()}_BASE_URL"] = sim.base_url(name)
    if case.first_down:
        os.environ[f"HAPPYHORSE_{first.upper()}_BASE_URL"] = _closed_port_url()
    ledger = Ledger(os.path.join(workdir, f"ledger-auto-{index}.sqlite3"))
    req = GenerationRequest(mode="t2v", version="1.0", prompt=f"routing case {index}", duration_s=3)
    before = sum(sim_stats(sim.url)["submissions"].get(n, 0) for n in ROUTING_HOSTS)
    if case.fault is not None:
        inject_fault(sim.url, {"provider": first, **case.fault})
    plan = plan_route(req).require()
    result, message = "WRONG", ""
    try:
        res = await run_auto(plan, RunOptions(out_dir=workdir), ledger=ledger)
        result = "recovered" if res.provider == second else "WRONG"
    except SubmitUncertain as exc:
        message = str(exc)
        result = "reported"
    except HappyHorseError as exc:
        message = str(exc)
    accepted = sum(sim_stats(sim.url)["submissions"].get(n, 0) for n in ROUTING_HOSTS) - before
    known = sum(1 for r in ledger.recent(50) if r.task_id or r.status == "uncertain")
    if (result == "recovered") != (case.expect == "recover"):
        result = "WRONG"
    sim.core.faults[first].clear()
    return Outcome("auto", case.name, case.expect, result, accepted, max(0, accepted - 1),
                   max(0, accepted - known), message[:160])


def _closed_port_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def run_routing_matrix(cases: tuple[RoutingCase, ...] = ROUTING_CASES) -> list[Outcome]:
    with tempfile.TemporaryDirectory() as workdir, \
            SimulatorServer(timing=SimTiming(queue_s=0.2, process_s=0.4), control=True) as sim:
        return [await run_routing_case(sim, case, i, workdir) for i, case in enumerate(cases)]


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
    outcomes = asyncio.run(run_matrix(sys.argv[1:] or None)) + asyncio.run(run_routing_matrix())
    for o in outcomes:
        print(f"{o.provider:<10} {o.fault:<30} {o.result:<10} submissions={o.submissions} "
              f"dup={o.duplicates} lost={o.lost}")
    summary = summarize(outcomes)
    print(json.dumps(summary))
    return 0 if summary["wrong"] == 0 and summary["duplicated_submissions"] == 0 and summary["lost_jobs"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
