"""The HappyHorse panel's routes (nodes/comfy/routes.py) over a real ledger, real MP4s and the real simulator.

The handlers are served by aiohttp exactly as ComfyUI would call them (ComfyUI itself: tests/integration). What
they must never return (a key, a header, a base URL, the config file's contents) and how they refuse bad
requests (a 4xx that says why, nothing changed) are checked here.
"""
from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from happyhorse.comfy.routes import Panel
from happyhorse.engine.ledger import Ledger
from happyhorse.engine.request import GenerationRequest
from happyhorse.engine.runner import JobRunner, RunOptions
from happyhorse.providers.registry import all_caps, resolve_endpoint
from happyhorse.simulator.core import SimTiming
from happyhorse.simulator.server import SimulatorServer

from .helpers import http

CANARY = "sk-panelcanary-0123456789abcdef"
FILE_CANARY = "rk_live_filecanary_0123456789"


@pytest.fixture
def slow_sim():
    """A simulator whose jobs stay queued long enough to be cancelled."""
    server = SimulatorServer(timing=SimTiming(queue_s=60.0, process_s=1.0)).start()
    yield server
    server.stop()


@pytest.fixture
def dirs(tmp_path):
    out = tmp_path / "output" / "happyhorse"
    out.mkdir(parents=True)
    return Ledger(tmp_path / "user" / "jobs.sqlite3"), out


async def client_for(panel: Panel) -> TestClient:
    app = web.Application()
    for method, path, handler in panel.routes():
        app.router.add_route(method, "/api" + path, handler)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def run_sim_job(sim, ledger: Ledger, out, prompt: str = "a horse in the panel"):
    endpoint = resolve_endpoint("simulator", base_url=sim.base_url("dashscope"))
    runner = JobRunner(endpoint, ledger=ledger, all_caps=all_caps())
    req = GenerationRequest(mode="t2v", prompt=prompt, version="1.1", duration_s=3)
    return await runner.run(req, RunOptions(out_dir=str(out)))


async def test_jobs_lists_a_finished_job_newest_first_with_nothing_secret(sim, dirs):
    ledger, out = dirs
    first = await run_sim_job(sim, ledger, out, "first horse")
    second = await run_sim_job(sim, ledger, out, "second horse")
    client = await client_for(Panel(ledger.path, out))
    try:
        resp = await client.get("/api/happyhorse/jobs")
        assert resp.status == 200
        text = await resp.text()
        jobs = json.loads(text)["jobs"]
    finally:
        await client.close()
    assert [j["task_id"] for j in jobs] == [second.task_id, first.task_id]
    job = jobs[0]
    assert job["state"] == "done" and job["provider"] == "simulator" and job["mode"] == "t2v"
    assert (job["version"], job["resolution"], job["duration_s"]) == ("1.1", "720p", 3)
    assert job["cost_usd"] == 0 and job["has_video"] and job["can_collect"] and not job["can_cancel"]
    assert job["prompt"] == "second horse"
    rec = ledger.get(job["id"])
    for private in (rec.base_url, rec.video_url, rec.fingerprint, rec.local_path, "sim-local-key"):
        assert private and private not in text, f"{private!r} reached the page"


async def test_status_says_yes_or_no_per_key_and_never_more(dirs, monkeypatch, tmp_path):
    ledger, out = dirs
    config = tmp_path / "hh.toml"
    config.write_text(f'[keys]\nreapi = "{FILE_CANARY}"\n[base_urls]\ndashscope = "https://dashscope-us.aliyuncs.com"\n')
    monkeypatch.setenv("HAPPYHORSE_CONFIG", str(config))
    monkeypatch.setenv("DASHSCOPE_API_KEY", CANARY)
    client = await client_for(Panel(ledger.path, out))
    try:
        resp = await client.get("/api/happyhorse/status")
        text = await resp.text()
    finally:
        await client.close()
    assert resp.status == 200
    setup = json.loads(text)["setup"]
    keys = {p["name"]: p["has_key"] for p in setup["providers"]}
    assert keys == {"simulator": True, "dashscope": True, "getimg": False, "apixo": False, "apiframe": False,
                    "aimlapi": False, "reapi": True}
    assert setup["dashscope_region"] == "virginia" and setup["upload_bucket"] is False
    for secret in (CANARY, CANARY[:12], FILE_CANARY, FILE_CANARY[:12], "dashscope-us.aliyuncs.com", str(config),
                   "Authorization", "Bearer"):
        assert secret not in text, f"{secret!r} reached the page"


async def test_video_is_served_only_for_a_file_the_ledger_names_in_the_output_folder(sim, dirs, tmp_path):
    ledger, out = dirs
    result = await run_sim_job(sim, ledger, out)
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"not yours")
    stray = await run_sim_job(sim, ledger, out, "another horse")
    ledger.update(stray.ledger_id, local_path=str(outside))             # a record pointing outside the folder
    link = out / "link.mp4"
    link.symlink_to(outside)
    linked = await run_sim_job(sim, ledger, out, "a linked horse")
    ledger.update(linked.ledger_id, local_path=str(link))              # inside by name, outside once resolved
    client = await client_for(Panel(ledger.path, out))
    try:
        resp = await client.get(f"/api/happyhorse/jobs/{result.ledger_id}/video")
        assert resp.status == 200 and resp.headers["Content-Type"] == "video/mp4"
        assert await resp.read() == open(result.path, "rb").read()
        assert "Content-Disposition" not in resp.headers
        resp = await client.get(f"/api/happyhorse/jobs/{result.ledger_id}/video?download=1")
        assert resp.headers["Content-Disposition"].startswith("attachment;")
        for job_id in (stray.ledger_id, linked.ledger_id):
            resp = await client.get(f"/api/happyhorse/jobs/{job_id}/video")
            assert resp.status == 404 and "no finished video" in (await resp.json())["error"]
        jobs = (await (await client.get("/api/happyhorse/jobs")).json())["jobs"]
        assert {j["id"]: j["has_video"] for j in jobs} == {result.ledger_id: True, stray.ledger_id: False,
                                                          linked.ledger_id: False}
    finally:
        await client.close()


async def test_bad_requests_get_a_clear_4xx_and_change_nothing(sim, dirs):
    ledger, out = dirs
    result = await run_sim_job(sim, ledger, out)
    before = ledger.get(result.ledger_id)
    client = await client_for(Panel(ledger.path, out))
    try:
        for path, status, words in [
            ("/api/happyhorse/jobs?limit=abc", 400, "limit must be a whole number"),
            ("/api/happyhorse/jobs?limit=0", 400, "limit must be a whole number"),
            ("/api/happyhorse/jobs?limit=100000", 400, "limit must be a whole number"),
            ("/api/happyhorse/jobs/not-a-job/video", 400, "32 hex digits"),
            ("/api/happyhorse/jobs/" + "0" * 32 + "/video", 404, "no such job"),
            (f"/api/happyhorse/jobs/{result.ledger_id}/video?download=yes", 400, "download must be 0 or 1"),
        ]:
            resp = await client.get(path)
            assert resp.status == status, path
            assert words in (await resp.json())["error"], path
        for job_id, status, words in [("..%2F..%2Fetc", 400, "32 hex digits"), ("0" * 32, 404, "no such job"),
                                      (result.ledger_id, 409, "cannot be cancelled: it is done")]:
            resp = await client.post(f"/api/happyhorse/jobs/{job_id}/cancel")
            assert resp.status == status, job_id
            assert words in (await resp.json())["error"]
    finally:
        await client.close()
    assert ledger.get(result.ledger_id) == before
    assert len(ledger.recent(100)) == 1


async def queued_job(sim, ledger: Ledger, out) -> tuple[str, str]:
    """Submit a job and stop following it once it is queued, as a restart would: (ledger id, task id)."""
    run = asyncio.ensure_future(run_sim_job(sim, ledger, out, f"a queued horse {time.time()}"))
    for _ in range(200):
        rec = next(iter(ledger.recent(1)), None)
        if rec is not None and rec.status == "queued":
            break
        await asyncio.sleep(0.05)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    return rec.id, rec.task_id


async def test_cancel_a_job_nobody_follows_cancels_it_at_the_host(slow_sim, dirs):
    ledger, out = dirs
    job_id, task_id = await queued_job(slow_sim, ledger, out)
    client = await client_for(Panel(ledger.path, out))
    try:
        job = (await (await client.get("/api/happyhorse/jobs")).json())["jobs"][0]
        assert job["state"] == "queued" and job["can_cancel"] and job["remaining_s"] is not None
        resp = await client.post(f"/api/happyhorse/jobs/{job_id}/cancel")
        assert resp.status == 200, await resp.text()
        assert task_id in (await resp.json())["message"]
    finally:
        await client.close()
    assert ledger.get(job_id).status == "canceled"
    status, body = http("GET", f"{slow_sim.base_url('dashscope')}/api/v1/tasks/{task_id}",
                        headers={"Authorization": "Bearer sim-local-key"})
    assert body["output"]["task_status"] == "CANCELED"


async def test_cancel_of_a_job_a_node_follows_goes_to_that_node(slow_sim, dirs):
    ledger, out = dirs
    job_id, task_id = await queued_job(slow_sim, ledger, out)
    asked = []
    client = await client_for(Panel(ledger.path, out, lambda provider, task: asked.append((provider, task)) or True))
    try:
        resp = await client.post(f"/api/happyhorse/jobs/{job_id}/cancel")
        assert resp.status == 202 and "Stopping" in (await resp.json())["message"]
    finally:
        await client.close()
    assert asked == [("simulator", task_id)]
    assert ledger.get(job_id).status == "queued"        # the node's runner records the outcome, not the route


async def test_status_counts_spend_per_provider_against_the_budget(dirs, monkeypatch, tmp_path):
    from happyhorse.engine.ledger import LedgerStatus

    ledger, out = dirs
    config = tmp_path / "hh.toml"
    config.write_text("[budget]\ndaily_usd = 5\nmonthly_usd = 50\n")
    monkeypatch.setenv("HAPPYHORSE_CONFIG", str(config))
    req = GenerationRequest(mode="t2v", prompt="a paid horse", version="1.1", duration_s=5)
    paid = ledger.create(req, "dashscope", "https://dashscope-intl.aliyuncs.com", estimate_usd=0.70)
    ledger.update(paid, status=LedgerStatus.DONE, cost_usd=0.70)
    ledger.create(req.with_(prompt="a horse of unknown price"), "reapi", "https://example.invalid", estimate_usd=None)
    refused = ledger.create(req.with_(prompt="a refused horse"), "dashscope", "https://dashscope-intl.aliyuncs.com",
                            estimate_usd=0.70)
    ledger.update(refused, status=LedgerStatus.REJECTED)            # hosts bill nothing for these
    client = await client_for(Panel(ledger.path, out))
    try:
        body = await (await client.get("/api/happyhorse/status")).json()
        config.write_text('[budget]\ndaily_usd = "lots-of-canary-money"\n')
        bad = await client.get("/api/happyhorse/status")
        bad_raw = await bad.text()
    finally:
        await client.close()
    today, month = body["spend"]["today"], body["spend"]["month"]
    assert (today["usd"], today["limit_usd"], today["unknown_price_jobs"]) == (0.7, 5.0, 1)
    assert today["by_provider"]["dashscope"] == {"usd": 0.7, "jobs": 1, "unknown_price_jobs": 0}
    assert today["by_provider"]["reapi"] == {"usd": 0.0, "jobs": 1, "unknown_price_jobs": 1}
    assert (month["usd"], month["limit_usd"], month["unknown_price_jobs"]) == (0.7, 50.0, 1)
    bad_body = json.loads(bad_raw)
    assert bad.status == 200 and bad_body["spend"] is None
    assert any("daily_usd" in h for h in bad_body["setup"]["hints"])
    for secret in ("lots-of-canary-money", str(config), config.name, str(tmp_path)):   # nothing of the file
        assert secret not in bad_raw
