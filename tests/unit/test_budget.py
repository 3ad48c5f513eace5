"""Spend guard against the simulator: max_usd per run, [budget] daily / monthly limits, `happyhorse spend`."""
import asyncio
import json
import sqlite3
import time

import pytest

from benchmarks.simctl import inject_fault, sim_stats
from happyhorse.engine.budget import BudgetLimits, SpendGuard, spend_summary
from happyhorse.engine.errors import BudgetExceeded, ConfigError
from happyhorse.engine.ledger import Ledger
from happyhorse.engine.request import GenerationRequest
from happyhorse.engine.runner import JobRunner, RunOptions
from happyhorse.engine.config import Secret
from happyhorse.providers.registry import ADAPTERS, Endpoint, all_caps
from tests.unit.test_cli import run

# DashScope's rate for 1.1 720p is 0.14 USD/s: a 3 s clip is estimated at 0.42 USD.
REQ = GenerationRequest(mode="t2v", version="1.1", prompt="a horse on a beach", duration_s=3)


def write_config(tmp_path, text):
    path = tmp_path / "xdg-config" / "happyhorse" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def runner_for(sim, provider, ledger):
    # Explicit key and base URL: the endpoint is built here, nothing is read from the environment.
    return JobRunner(Endpoint(ADAPTERS[provider], sim.base_url(provider), Secret("sk-budget-test")), ledger=ledger,
                     all_caps=all_caps())


def opts(tmp_path, guard):
    return RunOptions(out_dir=str(tmp_path / "out"), force_new=True, spend_guard=guard)


async def test_max_usd_refuses_before_sending(sim, tmp_path):
    runner = runner_for(sim, "dashscope", Ledger(tmp_path / "l.sqlite3"))
    with pytest.raises(BudgetExceeded, match=r"0\.42 USD, over the max_usd limit of 0\.40 USD"):
        await runner.run(REQ, opts(tmp_path, SpendGuard.load(0.4)))
    assert sim_stats(sim.url)["submissions"] == {}
    result = await runner.run(REQ, opts(tmp_path, SpendGuard.load(0.42)))     # exactly at the limit: allowed
    assert result.cost_usd == pytest.approx(0.42) and sim_stats(sim.url)["submissions"] == {"dashscope": 1}
    assert Ledger(tmp_path / "l.sqlite3").get(result.ledger_id).estimate_usd == pytest.approx(0.42)


async def test_unknown_price_with_a_limit_is_refused_saying_why(sim, tmp_path):
    # reAPI publishes no USD rate for HappyHorse 1.1.
    runner = runner_for(sim, "reapi", Ledger(tmp_path / "l.sqlite3"))
    with pytest.raises(BudgetExceeded, match="price of this job is unknown.*reapi publishes no USD rate.*max_usd"):
        await runner.run(REQ, opts(tmp_path, SpendGuard.load(5.0)))
    assert sim_stats(sim.url)["submissions"] == {}


async def test_daily_budget_counts_finished_jobs_and_names_the_numbers(sim, tmp_path):
    write_config(tmp_path, "[budget]\ndaily_usd = 0.5\n")
    ledger = Ledger(tmp_path / "l.sqlite3")
    runner = runner_for(sim, "dashscope", ledger)
    await runner.run(REQ, opts(tmp_path, SpendGuard.load()))
    with pytest.raises(BudgetExceeded) as exc:
        await runner.run(REQ.with_(prompt="another"), opts(tmp_path, SpendGuard.load()))
    msg = str(exc.value)
    assert "0.42 USD is spent or in flight today" in msg and "would add 0.42 USD" in msg
    assert "daily_usd budget of 0.50 USD" in msg
    assert sim_stats(sim.url)["submissions"] == {"dashscope": 1}


async def test_concurrent_jobs_cannot_both_slip_under_the_budget(sim, tmp_path):
    """Checked again at the submit, with the record made before anyone else checks: 2 x 0.42 > 0.50."""
    write_config(tmp_path, "[budget]\nmonthly_usd = 0.5\n")
    runner = runner_for(sim, "dashscope", Ledger(tmp_path / "l.sqlite3"))
    results = await asyncio.gather(*(runner.run(REQ.with_(prompt=f"horse {i}"), opts(tmp_path, SpendGuard.load()))
                                     for i in range(2)), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["BudgetExceeded", "JobResult"]
    assert "this month" in str(next(r for r in results if isinstance(r, BudgetExceeded)))
    assert sim_stats(sim.url)["submissions"] == {"dashscope": 1}


async def test_jobs_in_flight_count_by_their_estimate_and_failed_ones_not(sim, tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite3")
    runner = runner_for(sim, "dashscope", ledger)
    inject_fault(sim.url, {"provider": "dashscope", "stage": "job", "kind": "fail", "reason": "moderation"})
    with pytest.raises(Exception, match="moderation"):
        await runner.run(REQ, opts(tmp_path, SpendGuard.load()))
    inject_fault(sim.url, {"provider": "dashscope", "stage": "job", "kind": "stuck"})
    with pytest.raises(Exception, match="still queued"):
        await runner.run(REQ.with_(prompt="stuck"), RunOptions(out_dir=str(tmp_path), force_new=True,
                                                                queue_timeout_s=1.0))
    today = spend_summary(ledger, BudgetLimits()).today
    # The failed job costs nothing; the timed-out one may still run and be billed: its 0.42 estimate counts.
    assert today.usd == pytest.approx(0.42) and today.by_provider["dashscope"].jobs == 1


def test_spend_command_lists_providers_and_unknown_prices_apart(tmp_path):
    write_config(tmp_path, "[budget]\ndaily_usd = 10\nmonthly_usd = 100\n")
    ledger = Ledger()
    a = ledger.create(REQ, "dashscope", "http://x", estimate_usd=0.70)
    ledger.update(a, status="done", cost_usd=0.84)              # a reported cost wins over the estimate
    ledger.create(REQ.with_(prompt="b"), "reapi", "http://y", estimate_usd=None)        # unknown price, in flight
    last_month = time.time() - 40 * 86400
    old = ledger.create(REQ.with_(prompt="c"), "dashscope", "http://x", estimate_usd=5.0)
    with sqlite3.connect(ledger.path) as db:
        db.execute("UPDATE jobs SET created_at=? WHERE id=?", (last_month, old))
    r = run("spend")
    assert r.returncode == 0, r.stderr
    assert "Today: 0.84 USD of 10.00 USD budget, plus 1 job(s) of unknown price" in r.stdout
    assert "This month: 0.84 USD of 100.00 USD budget" in r.stdout
    assert "reapi" in r.stdout and "1 of unknown price" in r.stdout
    j = json.loads(run("spend", "--json").stdout)
    assert j["today"]["by_provider"]["dashscope"] == {"usd": 0.84, "jobs": 1, "unknown_price_jobs": 0}
    assert j["month"]["unknown_price_jobs"] == 1


def test_cli_max_usd_and_bad_budget_config(tmp_path):
    r = run("generate", "--provider", "simulator", "--mode", "t2v", "--prompt", "x", "--duration", "3",
            "--max-usd", "-1", "--out-dir", str(tmp_path))
    assert r.returncode == 2 and "max_usd -1.0 is not a limit" in r.stderr
    write_config(tmp_path, "[budget]\ndaily_usd = \"lots\"\n")
    with pytest.raises(ConfigError, match="daily_usd = 'lots' is not a limit"):
        BudgetLimits.from_settings()


def test_old_ledger_gains_the_estimate_column(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, created_at REAL NOT NULL, updated_at REAL NOT NULL, "
                   "provider TEXT NOT NULL, base_url TEXT NOT NULL, version TEXT NOT NULL, mode TEXT NOT NULL, "
                   "prompt TEXT NOT NULL, params TEXT NOT NULL, inputs TEXT NOT NULL, fingerprint TEXT NOT NULL, "
                   "task_id TEXT, status TEXT NOT NULL, history TEXT NOT NULL, video_url TEXT, local_path TEXT, "
                   "billed_seconds REAL, cost_usd REAL, error TEXT)")
        db.execute("INSERT INTO jobs VALUES ('old', 1, 1, 'dashscope', 'u', '1.1', 't2v', 'p', '{}', '[]', 'f', "
                   "'t', 'done', '[]', NULL, NULL, 5, 0.7, NULL)")
    ledger = Ledger(path)
    assert ledger.get("old").estimate_usd is None and ledger.get("old").cost_usd == 0.7
    assert ledger.get(ledger.create(REQ, "dashscope", "u", estimate_usd=0.7)).estimate_usd == 0.7


def test_another_process_cannot_spend_the_last_of_the_budget_meanwhile(tmp_path):
    """ComfyUI and a CLI batch share one ledger: while one process checks the budget and records its job, another
    process's check waits for that record (SQLite's write lock) and counts it. 0.42 + 0.42 > 0.50: one is refused."""
    import subprocess
    import sys
    import threading

    path = tmp_path / "jobs.sqlite3"
    ledger = Ledger(path)
    guard = SpendGuard(limits=BudgetLimits(monthly_usd=0.5))
    checked, release = threading.Event(), threading.Event()

    def admit_here(view):
        guard.check_usd(0.42, view, "this job")
        checked.set()
        release.wait(60)                      # the other process starts its own check now

    here = threading.Thread(target=ledger.create, args=(REQ, "dashscope", "https://dashscope.example", 0.42),
                            kwargs={"admit": admit_here})
    here.start()
    assert checked.wait(30)
    other = subprocess.Popen([sys.executable, "-c", f"""
import sys
from happyhorse.engine.budget import BudgetLimits, SpendGuard
from happyhorse.engine.ledger import Ledger
from happyhorse.engine.request import GenerationRequest
ledger = Ledger({str(path)!r})
guard = SpendGuard(limits=BudgetLimits(monthly_usd=0.5))
print("ready", flush=True)
ledger.create(GenerationRequest(mode="t2v", version="1.1", prompt="other", duration_s=3), "dashscope",
              "https://dashscope.example", 0.42, admit=lambda view: guard.check_usd(0.42, view, "this job"))
"""], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "ready"
        time.sleep(1.0)                       # the other process is now inside create()
        release.set()
        here.join(30)
        _, err = other.communicate(timeout=60)
    finally:
        release.set()
        other.kill()
    assert other.returncode != 0 and "BudgetExceeded" in err, err
    assert "0.42 USD is spent or in flight this month" in err
    assert [r.prompt for r in ledger.since(0)] == [REQ.prompt]
