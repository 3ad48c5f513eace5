"""Jobs at once: the pack caps nothing itself; a host at its account's limit answers the submit with 429 (the
simulator's /_sim/limits), and the runner waits and sends it again - nothing paid twice, nothing lost."""
import asyncio
import json
import urllib.request

import pytest

from benchmarks.simctl import inject_fault, sim_stats
from happyhorse.engine import http
from happyhorse.engine.config import Secret
from happyhorse.engine.errors import JobCancelled
from happyhorse.engine.ledger import Ledger, LedgerStatus
from happyhorse.engine.request import GenerationRequest
from happyhorse.engine.runner import JobRunner, RunOptions
from happyhorse.providers.registry import ADAPTERS, Endpoint, all_caps


def control(sim, route: str, body: dict) -> None:
    req = urllib.request.Request(sim.url + route, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()


def runner_for(sim, ledger, provider="dashscope"):
    return JobRunner(Endpoint(ADAPTERS[provider], sim.base_url(provider), Secret("sk-limits-test")), ledger=ledger,
                     all_caps=all_caps())


def reqs(n):
    return [GenerationRequest(mode="t2v", prompt=f"horse {i}", duration_s=3, resolution="720p") for i in range(n)]


@pytest.fixture
def quick_transport_giveup(monkeypatch):
    """The transport's own 429 retries (6 tries, ~10 s) would hide the runner's waiting behind a short job; with
    two tries it gives up at once, so only the runner's wait for a free slot can see a job through."""
    real = http.RetryPolicy
    monkeypatch.setattr(http, "RetryPolicy", lambda: real(attempts=2, base_delay_s=0.1))


async def test_eight_jobs_at_once_all_reach_the_host_at_once(sim, tmp_path):
    # Undocumented per-host caps used to hold 4 DashScope jobs back until others finished (two waves).
    control(sim, "/_sim/timing", {"queue_s": 0.3, "process_s": 6})
    ledger = Ledger(tmp_path / "l.sqlite3")
    runner = runner_for(sim, ledger)
    results = await asyncio.gather(*(runner.run(r, RunOptions(out_dir=str(tmp_path / "out"))) for r in reqs(8)))
    stats = sim_stats(sim.url)
    assert stats["submissions"] == {"dashscope": 8} and stats["peak_jobs"] == {"dashscope": 8}
    assert {ledger.get(r.ledger_id).status for r in results} == {LedgerStatus.DONE}


async def test_a_host_at_its_limit_is_waited_on_and_each_job_paid_once(sim, tmp_path, quick_transport_giveup):
    control(sim, "/_sim/timing", {"queue_s": 0.2, "process_s": 1.0})
    control(sim, "/_sim/limits", {"provider": "dashscope", "jobs_at_once": 1})
    ledger = Ledger(tmp_path / "l.sqlite3")
    runner = runner_for(sim, ledger)
    seen: list[str] = []
    results = await asyncio.gather(*(runner.run(r, RunOptions(out_dir=str(tmp_path / "out")),
                                                on_progress=lambda p: seen.append(p.text()))
                                     for r in reqs(3)))
    stats = sim_stats(sim.url)
    assert stats["submissions"] == {"dashscope": 3} and stats["peak_jobs"] == {"dashscope": 1}
    assert stats["refused_busy"]["dashscope"] >= 2                   # the limit really refused submits
    assert len({r.task_id for r in results}) == 3
    records = [ledger.get(r.ledger_id) for r in results]
    assert [rec.status for rec in records] == [LedgerStatus.DONE] * 3 and all(rec.error is None for rec in records)
    assert len(ledger.recent()) == 3                                    # no rejected rows left by the waits
    assert any("DashScope is at its limit for this account (HTTP 429)" in t and "nothing is billed" in t
               for t in seen)


async def test_cancel_while_the_host_is_at_its_limit_submits_nothing(sim, tmp_path, quick_transport_giveup):
    control(sim, "/_sim/limits", {"provider": "dashscope", "jobs_at_once": 1})
    inject_fault(sim.url, {"provider": "dashscope", "stage": "job", "kind": "stuck"})
    ledger = Ledger(tmp_path / "l.sqlite3")
    runner = runner_for(sim, ledger)
    first, second = reqs(2)
    blocker = asyncio.create_task(runner.run(first, RunOptions(out_dir=str(tmp_path / "out"))))
    while sim_stats(sim.url)["submissions"].get("dashscope") != 1:
        await asyncio.sleep(0.1)
    waiting = asyncio.Event()
    with pytest.raises(JobCancelled, match="nothing was submitted or billed"):
        await runner.run(second, RunOptions(out_dir=str(tmp_path / "out")),
                         on_progress=lambda p: waiting.set() if "at its limit" in p.text() else None,
                         is_cancelled=waiting.is_set)
    blocker.cancel()
    assert sim_stats(sim.url)["submissions"] == {"dashscope": 1}
    rec = next(r for r in ledger.recent() if r.prompt == second.prompt)
    assert rec.status == LedgerStatus.REJECTED and "nothing was submitted" in rec.error
