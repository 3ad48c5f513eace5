"""Polling learned from the ledger: the forecast (durations.py), the pace (follow.Pace), the host's rate limit,
and what the real simulator's hosts tell the pace (DashScope's scheduled_time, Apiframe's progress)."""
import asyncio
import math
import random
import statistics
import time

import pytest

from happyhorse.engine.durations import DurationModel, Forecast, Spread
from happyhorse.engine.follow import Pace, PollPolicy, poll_turn
from happyhorse.engine.request import GenerationRequest
from happyhorse.engine.runner import RunOptions
from happyhorse.providers.registry import get_adapter
from tests.contract.helpers import http, make_runner, stats

DASHSCOPE = PollPolicy(0.5, 15.0, 7.0, 20.0)


def follow(pace: Pace, queue_s: float, run_s: float) -> tuple[float, int]:
    """(lag, polls) of the pace on a job that waits queue_s and runs run_s, the host saying when it started
    (as DashScope does), in virtual time."""
    t, polls, anchored = pace.next_delay(0.0, 0), 0, False
    while True:
        polls += 1
        if t >= queue_s + run_s:
            return t - queue_s - run_s, polls
        if t >= queue_s and not anchored:
            pace.started_running(queue_s)
            anchored = True
        delay = pace.next_delay(t, polls)
        assert DASHSCOPE.min_s - 1e-9 <= delay <= DASHSCOPE.max_s + 1e-9
        t += delay


def test_pace_is_sparse_early_dense_at_the_expected_end_and_steady_past_it():
    pace = Pace(Forecast(Spread(100.0, 0.03)), DASHSCOPE)
    first = pace.next_delay(0.0, 0)
    assert first == DASHSCOPE.max_s                         # the job cannot be done for a long while
    plan = list(pace._plan)                                 # the poll times planned (seconds since submit)
    assert plan[0] == first
    gaps = [b - a for a, b in zip(plan, plan[1:])]
    near_end = [g for a, g in zip(plan, gaps) if 97 <= a <= 103]
    assert near_end and max(near_end) <= 1.0                # dense around 100 s (sigma 3 s)
    # Poll k happens only if the job was unfinished at poll k-1: no more than polling every 7 s would take.
    expected_polls = sum(pace.dist.sf(t) for t in [0.0] + plan[:-1])
    assert expected_polls <= 100 * math.exp(0.03 ** 2 / 2) / DASHSCOPE.steady_s + 0.5 + 1e-6
    late = pace.next_delay(130.0, 20)                       # far beyond what the forecast allows
    assert late == DASHSCOPE.steady_s


def test_learned_pace_beats_fixed_7s_on_a_consistent_host_and_stays_close_when_history_misleads():
    """Virtual time, many jobs: the schedule itself, measured against fixed 7 s on the same jobs."""
    rng = random.Random(3)
    jobs = [(rng.uniform(5, 40), 55 * rng.lognormvariate(0, 0.02)) for _ in range(200)]
    fallback = Spread(72.0, 0.5)

    def run(forecast, policy=DASHSCOPE):
        out = [follow(Pace(forecast, policy), q, r) for q, r in jobs]
        return statistics.mean(x[0] for x in out), statistics.mean(x[1] for x in out)

    fixed_lag, fixed_polls = run(Forecast(fallback), PollPolicy.fixed(7.0))
    lag, polls = run(Forecast(Spread(77.0, 0.15), Spread(55.0, 0.025), fallback))
    assert lag <= 0.5 and polls <= fixed_polls
    slow_lag, slow_polls = run(Forecast(Spread(154.0, 0.15), Spread(110.0, 0.025), fallback))   # 2x too slow
    assert slow_lag <= 1.25 * fixed_lag and slow_polls <= fixed_polls
    fast_lag, fast_polls = run(Forecast(Spread(38.0, 0.15), Spread(27.0, 0.025), fallback))     # 2x too fast
    assert fast_lag <= 1.25 * fixed_lag and fast_polls <= 1.3 * fixed_polls     # the wasted dense window


def test_progress_moves_the_forecast_to_where_the_host_says_the_end_is():
    pace = Pace(Forecast(Spread(100.0, 0.3)), DASHSCOPE)
    pace.progressed(0.5, 30.0)              # half done after 30 s: the end is near 60 s, not 100 s
    assert 57 < pace.expected_s < 63
    pace.progressed(1.5, 30.0)              # nonsense is ignored
    assert 57 < pace.expected_s < 63


def test_the_hosts_documented_query_rate_is_never_exceeded():
    async def many() -> float:
        start = time.monotonic()
        await asyncio.gather(*(poll_turn("dashscope", 20.0) for _ in range(11)))
        return time.monotonic() - start

    assert asyncio.run(many()) >= 10 / 20.0 - 0.01         # 11 polls at 20 per second: at least 0.5 s
    assert get_adapter("dashscope").poll_max_qps == 20.0


def test_dashscope_reports_when_the_job_started_and_the_ledger_keeps_it(sim, tmp_path, monkeypatch):
    """Real simulator, real runner: the poll reply's scheduled_time gives the start by the host's clock; the
    ledger keeps it ("began") and the last poll before each change ("after"); the model learns the run time."""
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test")
    runner = make_runner(sim, tmp_path, "dashscope")
    req = GenerationRequest(mode="t2v", prompt="a horse", duration_s=3, resolution="720p")
    for seed in range(3):
        http("POST", sim.url + "/_sim/faults", {"provider": "dashscope", "stage": "job", "kind": "slow",
                                                  "seconds": 3.0, "queue_seconds": 0.4})
        res = asyncio.run(runner.run(req.with_(seed=seed), RunOptions(out_dir=str(tmp_path), expected_s=4.0)))
    job = stats(sim)["jobs"][res.task_id]
    rec = runner.ledger.get(res.ledger_id)
    by_status = {h["status"]: h for h in rec.history}
    assert "after" in by_status["succeeded"] and by_status["succeeded"]["after"] < by_status["succeeded"]["at"]
    assert abs(by_status["running"]["began"] - (job["created"] + 0.3 + 0.4)) < 0.05
    model = DurationModel.from_ledger(runner.ledger, runner.adapter)
    run = model.forecast(req).run
    assert run is not None and 3.5 * 0.9 < run.median_s < 3.5 * 1.1          # the sim's 0.5 s + 3 s slow


def test_apiframe_progress_reaches_the_status():
    from happyhorse.engine.http import HttpReply

    adapter = get_adapter("apiframe")
    reply = HttpReply(200, {}, {"id": "j", "status": "PROCESSING", "progress": 40, "result": None})
    assert adapter.parse_poll(reply).progress == pytest.approx(0.4)
    assert adapter.parse_poll(HttpReply(200, {}, {"id": "j", "status": "QUEUED", "progress": "x"})).progress is None


def test_a_misleading_history_is_overruled_by_two_newer_jobs():
    from happyhorse.engine.durations import Sample, _estimate

    key = ("1.1", "t2v", "720p", "3-5")
    old = [Sample(math.log(2.0), 0.0)] * 10
    new = [Sample(math.log(1.0), 0.0)] * 2
    assert _estimate({key: old}, key, 60.0).median_s == pytest.approx(120.0, rel=0.05)
    assert _estimate({key: new + old}, key, 60.0).median_s == pytest.approx(60.0, rel=0.05)
