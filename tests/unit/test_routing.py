"""Provider auto against several simulated hosts at once: ranking, the choice explained, failover that never
pays twice (first host down / out of credits / 5xx -> next host; uncertain submit or a task id -> stop)."""
import json
import socket

import pytest

from benchmarks.simctl import inject_fault, sim_stats
from happyhorse.engine import routing
from happyhorse.engine.errors import ConfigError, JobFailed, ProviderError, SubmitUncertain
from happyhorse.engine.ledger import Ledger
from happyhorse.engine.request import GenerationRequest
from happyhorse.engine.runner import RunOptions
from happyhorse.providers.registry import ADAPTERS
from tests.unit.test_budget import write_config
from tests.unit.test_cli import run

# HappyHorse 1.0, 720p, 3 s: APIXO 0.375 USD, DashScope 0.42, getimg.ai 0.42, reAPI 0.4875, the rest unknown.
REQ = GenerationRequest(mode="t2v", version="1.0", prompt="a horse in the rain", duration_s=3)


@pytest.fixture
def hosts(sim, monkeypatch):
    """hosts(*names, down=()): keys for these hosts, each pointed at its simulated protocol (or at a closed port
    when down). Returns the environment, for CLI runs."""
    def setup(*names, down=()):
        env = {}
        for name in names:
            env[ADAPTERS[name].caps.key_env] = f"sk-routing-{name}"
            env[f"HAPPYHORSE_{name.upper()}_BASE_URL"] = closed_port_url() if name in down else sim.base_url(name)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        return env
    return setup


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"       # nothing listens here any more: connection refused


def submissions(sim):
    return sim_stats(sim.url)["submissions"]


async def run_auto(tmp_path, req=REQ, **kw):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    events = []
    plan = routing.plan_route(req).require()
    result = await routing.run_auto(plan, RunOptions(out_dir=str(tmp_path / "out"), **kw), ledger=ledger,
                                    on_event=events.append)
    return result, ledger, events


def test_ranking_is_deterministic_and_prefer_breaks_ties(sim, hosts, tmp_path):
    hosts("dashscope", "getimg")
    a, b = routing.plan_route(REQ), routing.plan_route(REQ)
    assert [c.provider for c in a.ranked] == [c.provider for c in b.ranked] == ["dashscope", "getimg"]
    assert "tie broken by name" in a.why() and "runner-up: getimg (0.42 USD)" in a.why()
    write_config(tmp_path, '[routing]\nprefer = ["getimg", "reapi"]\n')
    p = routing.plan_route(REQ)
    assert p.chosen.provider == "getimg" and "tie broken by [routing] prefer" in p.why()
    excluded = {c.provider: c.excluded for c in p.excluded}
    assert excluded["apixo"] == "no API key (set APIXO_API_KEY)" and "never chosen by auto" in excluded["simulator"]
    write_config(tmp_path, '[routing]\nprefer = ["dashscop"]\n')
    with pytest.raises(ConfigError, match="'dashscop', which is not a provider"):
        routing.plan_route(REQ)


def test_unknown_prices_come_after_known_ones_and_unfit_hosts_are_excluded(sim, hosts):
    hosts("apiframe", "aimlapi", "reapi", "dashscope")
    p = routing.plan_route(REQ.with_(version="1.1"))
    # reAPI and Apiframe publish no USD rate for 1.1; AI/ML API serves 1.0 only.
    assert [c.provider for c in p.ranked] == ["dashscope", "apiframe", "reapi"]
    assert "HappyHorse 1.0 only" in {c.provider: c.excluded for c in p.excluded}["aimlapi"]
    seeded = routing.plan_route(REQ.with_(version="1.1", seed=7))     # a seed the user asked for must be honoured
    assert "reapi" not in [c.provider for c in seeded.ranked]
    soft = routing.plan_route(REQ.with_(version="1.1", seed=7), seed_is_optional=True)
    assert "reapi" in [c.provider for c in soft.ranked]


def test_estimate_auto_prints_the_whole_ranking(sim, hosts):
    env = hosts("dashscope", "apixo", "getimg")
    r = run("estimate", "--provider", "auto", "--mode", "t2v", "--version", "1.0", "--duration", "3", env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("auto chose apixo: cheapest known price (0.38 USD) of 3 hosts")
    assert "1. apixo      0.38 USD  <- chosen" in r.stdout and "2. dashscope  0.42 USD" in r.stdout
    assert "reapi      excluded: no API key (set REAPI_API_KEY) (would cost 0.49 USD)" in r.stdout
    j = json.loads(run("estimate", "--provider", "auto", "--mode", "t2v", "--version", "1.0", "--duration", "3",
                       "--json", env=env).stdout)
    assert j["chosen"] == "apixo" and [x["provider"] for x in j["ranking"]] == ["apixo", "dashscope", "getimg"]
    assert submissions(sim) == {}                   # pricing sends nothing


def test_generate_auto_says_why_and_runs_at_the_cheapest(sim, hosts, tmp_path):
    env = hosts("dashscope", "apixo")
    r = run("generate", "--provider", "auto", "--mode", "t2v", "--version", "1.0", "--duration", "3",
            "--prompt", "a horse", "--out-dir", str(tmp_path), "--json", "--quiet", env=env)
    assert r.returncode == 0, r.stderr
    assert "auto chose apixo: cheapest known price (0.38 USD)" in r.stderr and "runner-up: dashscope" in r.stderr
    result = json.loads(r.stdout)
    assert result["provider"] == "apixo" and result["routing"].startswith("auto chose apixo")
    assert submissions(sim) == {"apixo": 1}
    rows = json.loads(run("jobs", "list", "--json", env=env).stdout)
    assert [(x["provider"], x["status"]) for x in rows] == [("apixo", "done")]


async def test_first_host_down_fails_over(sim, hosts, tmp_path):
    hosts("apixo", "dashscope", down=("apixo",))
    result, ledger, events = await run_auto(tmp_path)
    assert result.provider == "dashscope" and submissions(sim) == {"dashscope": 1}
    assert "failed over to dashscope" in result.extra["routing"]
    assert any("apixo refused the job (server" in e and "failing over to dashscope" in e for e in events)
    attempts = {r.provider: r for r in ledger.recent()}
    assert attempts["apixo"].status == "rejected" and "failed over to dashscope" in attempts["apixo"].error
    assert attempts["dashscope"].status == "done"


@pytest.mark.parametrize("status,kind", [(402, "credits"), (401, "auth"), (503, "server")])
async def test_refused_submit_fails_over_once(sim, hosts, tmp_path, status, kind):
    hosts("apixo", "dashscope")
    inject_fault(sim.url, {"provider": "apixo", "stage": "submit", "kind": "status", "status": status})
    result, ledger, events = await run_auto(tmp_path)
    assert result.provider == "dashscope" and submissions(sim) == {"dashscope": 1}
    assert any(f"apixo refused the job ({kind}" in e for e in events)


async def test_uncertain_submit_stops_and_never_tries_the_next_host(sim, hosts, tmp_path):
    hosts("apixo", "dashscope")
    inject_fault(sim.url, {"provider": "apixo", "stage": "submit", "kind": "drop_after"})
    with pytest.raises(SubmitUncertain):
        await run_auto(tmp_path)
    assert submissions(sim) == {"apixo": 1}          # the host took it; nobody else was asked


async def test_no_failover_once_a_task_id_came_back(sim, hosts, tmp_path):
    hosts("apixo", "dashscope")
    inject_fault(sim.url, {"provider": "apixo", "stage": "job", "kind": "fail", "reason": "simulated moderation"})
    with pytest.raises(JobFailed, match="simulated moderation"):
        await run_auto(tmp_path)
    assert submissions(sim) == {"apixo": 1}


async def test_bad_request_is_not_failed_over(sim, hosts, tmp_path):
    hosts("apixo", "dashscope")
    inject_fault(sim.url, {"provider": "apixo", "stage": "submit", "kind": "status", "status": 400})
    with pytest.raises(ProviderError):
        await run_auto(tmp_path)
    assert submissions(sim) == {}


async def test_rerun_after_failover_reuses_the_job_instead_of_paying_the_recovered_host(sim, hosts, tmp_path):
    hosts("apixo", "dashscope")
    inject_fault(sim.url, {"provider": "apixo", "stage": "submit", "kind": "status", "status": 503})
    first, _, _ = await run_auto(tmp_path)
    again, _, events = await run_auto(tmp_path)          # apixo is healthy again and cheaper
    assert (first.provider, again.provider, again.origin) == ("dashscope", "dashscope", "reused")
    assert submissions(sim) == {"dashscope": 1} and any("staying there" in e for e in events)


@pytest.mark.parametrize("first,second,key,why", [
    ("apixo", "dashscope", "sk-nocredit", "Insufficient credits"),     # APIXO: code 400 inside an HTTP 200 reply
    ("dashscope", "getimg", "sk-arrears", "Arrearage"),                 # DashScope: HTTP 400 Arrearage
])
async def test_in_body_and_host_specific_no_credit_answers_fail_over(sim, hosts, tmp_path, monkeypatch, first,
                                                                     second, key, why):
    hosts(first, second)
    monkeypatch.setenv(ADAPTERS[first].caps.key_env, key)      # the simulated account has no credits
    result, ledger, events = await run_auto(tmp_path)
    assert result.provider == second and submissions(sim) == {second: 1}
    refused = next(r for r in ledger.recent() if r.provider == first)
    assert refused.status == "rejected" and why in refused.error and f"failed over to {second}" in refused.error


def test_node_price_pill_and_cost_estimate_show_the_auto_choice(sim, hosts):
    from happyhorse.comfy.estimates import price_for_widgets

    hosts("dashscope", "apixo")
    widgets = {"prompt": "x", "provider": "auto", "provider.version": "1.0", "provider.version.resolution": "720p",
               "provider.version.aspect_ratio": "16:9", "provider.version.duration": 3}
    pill = price_for_widgets("HappyHorsePack.Text2Video", widgets)
    assert pill["label"] == "~0.38 USD at apixo" and pill["breakdown"][0].startswith("auto chose apixo")
    assert any("2. dashscope  0.42 USD" in line for line in pill["breakdown"])
    est = price_for_widgets("HappyHorsePack.CostEstimate", {"mode": "edit", "mode.provider": "auto",
                                                             "mode.provider.version": "1.0",
                                                             "mode.provider.version.resolution": "720p",
                                                             "mode.source_seconds": 5.0})
    # Edit is billed on input + output seconds: APIXO 0.125 x 10 s.
    assert est["label"] == "~1.25 USD at apixo" and est["usd"] == pytest.approx(1.25)
