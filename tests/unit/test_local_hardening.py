"""What stays on this machine stays private: the ledger's permissions, redacted base URLs, the simulator's
control API against web pages (cross-origin, DNS rebinding), its media fetch, and debug logging's reach."""
from __future__ import annotations

import http.client
import json
import os
import stat
import subprocess
import sys

import pytest
from aiohttp import web

from happyhorse.engine.ledger import Ledger
from happyhorse.engine.request import GenerationRequest
from happyhorse.engine.uploads.cache import UploadCache
from happyhorse.simulator.core import SimCore, SimMediaError
from happyhorse.simulator.server import SimulatorServer


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_ledger_and_upload_cache_are_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        home = tmp_path / "home" / "happyhorse"
        ledger = Ledger(home / "jobs.sqlite3")
        ledger.create(GenerationRequest(mode="t2v", prompt="a private prompt"), "dashscope", "https://h.example")
        UploadCache(home / "uploads.sqlite3")
        with ledger._connect() as db:                     # WAL keeps -wal and -shm while a connection is open
            db.execute("SELECT count(*) FROM jobs").fetchone()
            files = [home / n for n in ("jobs.sqlite3", "jobs.sqlite3-wal", "jobs.sqlite3-shm", "uploads.sqlite3")]
            assert all(f.exists() for f in files)
            assert {f.name: oct(_mode(f)) for f in files} == {f.name: "0o600" for f in files}
        assert oct(_mode(home)) == "0o700"
    finally:
        os.umask(old)


def test_an_existing_ledger_is_tightened(tmp_path):
    home = tmp_path / "old"
    home.mkdir(mode=0o755)
    Ledger(home / "jobs.sqlite3")
    os.chmod(home / "jobs.sqlite3", 0o644)
    Ledger(home / "jobs.sqlite3")
    assert oct(_mode(home / "jobs.sqlite3")) == "0o600"


def test_base_urls_are_stored_without_userinfo(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite3")
    req = GenerationRequest(mode="t2v", prompt="p")
    job = ledger.create(req, "reapi", "https://me:hunter2@proxy.example/reapi")
    assert ledger.get(job).base_url == "https://proxy.example/reapi"
    assert ledger.find_fingerprint(req.fingerprint(), "reapi", "https://me:hunter2@proxy.example/reapi").id == job
    assert b"hunter2" not in (tmp_path / "l.sqlite3").read_bytes()


# --- the simulator's control API -----------------------------------------------------------------------------


def _request(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_control_routes_exist_only_when_asked_for():
    with SimulatorServer() as sim:
        assert _request(sim.url, "GET", "/_sim/stats")[0] == 404
        assert _request(sim.url, "POST", "/_sim/faults", b"{}", {"Content-Type": "application/json"})[0] == 404
    with SimulatorServer(control=True) as sim:
        assert _request(sim.url, "GET", "/_sim/stats")[0] == 200


def test_a_web_page_cannot_drive_the_simulator():
    fault = json.dumps({"provider": "dashscope", "stage": "poll", "kind": "drop"}).encode()
    with SimulatorServer(control=True) as sim:
        port = sim.url.rsplit(":", 1)[1]
        # DNS rebinding: the page's own name resolves to 127.0.0.1, so the Host header carries that name.
        assert _request(sim.url, "GET", "/_sim/stats", headers={"Host": f"evil.example:{port}"})[0] == 403
        assert _request(sim.url, "GET", "/dashscope/api/v1/tasks/x", headers={"Host": "evil.example"})[0] == 403
        # A cross-origin fetch carries its Origin (or Sec-Fetch-Site); a form post can only send text/plain.
        assert _request(sim.url, "POST", "/_sim/faults", fault, {"Content-Type": "application/json",
                                                                  "Origin": "http://evil.example"})[0] == 403
        assert _request(sim.url, "POST", "/_sim/faults", fault, {"Content-Type": "application/json",
                                                                  "Sec-Fetch-Site": "cross-site"})[0] == 403
        assert _request(sim.url, "POST", "/_sim/faults", fault, {"Content-Type": "text/plain"})[0] == 415
        assert not sim.core.faults["dashscope"]
        # Tests and scripts on this machine still work, by IP or by name.
        for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
            status, _ = _request(sim.url, "POST", "/_sim/faults", fault,
                                 {"Content-Type": "application/json", "Host": host})
            assert status == 200
        assert len(sim.core.faults["dashscope"]) == 2


async def test_the_simulator_media_fetch_checks_every_redirect_hop():
    async def redirect(request):
        raise web.HTTPFound("http://192.0.2.10/private.png")

    app = web.Application()
    app.router.add_get("/{tail:.*}", redirect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/img.png"
    core = SimCore()
    try:
        with pytest.raises(SimMediaError, match="only fetches media from this machine, not 192.0.2.10"):
            await core.fetch_media(url)
    finally:
        core.close()
        await runner.cleanup()


# --- logging -------------------------------------------------------------------------------------------------


def test_debug_logging_covers_only_the_packs_own_loggers():
    code = ("import logging, sys\n"
            "from happyhorse.cli import configure_logging\n"
            "configure_logging()\n"
            "on = lambda n: logging.getLogger(n).isEnabledFor(logging.DEBUG)\n"
            "print(on('happyhorse.http'), on('happyhorse'), on('botocore.auth'), on('aiohttp.client'), on(''))\n")
    env = {**os.environ, "HAPPYHORSE_LOG": "debug"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["True", "True", "False", "False", "False"]
