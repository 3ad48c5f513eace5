"""A hostile or broken host, against real local servers: plain-http keys, echoed keys, oversized and malformed
replies, unquoted task ids, result URLs aimed at this machine or network."""
from __future__ import annotations

import asyncio
import gzip
import socket
import tracemalloc
from urllib.parse import unquote

import pytest
from aiohttp import web

from happyhorse.engine.errors import ConfigError, DownloadError, ProviderError, SubmitUncertain, ValidationError
from happyhorse.engine.http import HttpCall, RetryPolicy, Transport, check_fetch_url
from happyhorse.engine.redact import redact_url
from happyhorse.providers.registry import ADAPTERS, resolve_endpoint

CANARY = "sk-CANARY-hostile-5e1f"
AUTH = {"Authorization": f"Bearer {CANARY}"}


async def serve(handler, host: str = "127.0.0.1"):
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    return runner, f"http://{host}:{site._server.sockets[0].getsockname()[1]}"


async def serve_raw(reply: bytes):
    """A TCP server that answers every request with exactly `reply` (e.g. a malformed status line)."""
    seen: list[bytes] = []

    async def handle(reader, writer):
        seen.append(await reader.read(65536))
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen


def _lan_ip() -> str | None:
    """This machine's address on its network (not loopback), to stand in for a remote host."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


def _local_name() -> str | None:
    """This machine's own host name, when it resolves to a non-public address (it usually does)."""
    import ipaddress

    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 443)}
    except OSError:
        return None
    return name if addresses and not any(ipaddress.ip_address(a).is_global for a in addresses) else None


# --- the key over plain http -------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", [n for n in ADAPTERS if n != "simulator"])
def test_a_key_is_never_sent_over_plain_http_to_another_machine(provider, monkeypatch):
    monkeypatch.setenv(ADAPTERS[provider].caps.key_env, CANARY)
    with pytest.raises(ConfigError) as err:
        resolve_endpoint(provider, base_url="http://api.example.com/v1")
    text = str(err.value)
    assert "https" in text and "--base-url" in text and f"HAPPYHORSE_{provider.upper()}_BASE_URL" in text
    monkeypatch.setenv(f"HAPPYHORSE_{provider.upper()}_BASE_URL", "http://10.1.2.3:8080")
    with pytest.raises(ConfigError, match=f"HAPPYHORSE_{provider.upper()}_BASE_URL"):
        resolve_endpoint(provider)
    # This machine is fine over http; anywhere over https is fine.
    for ok in ("http://127.0.0.1:9", "http://localhost:9/x", "http://[::1]:9", "https://api.example.com"):
        assert resolve_endpoint(provider, base_url=ok).base_url == ok


async def test_no_byte_reaches_a_plain_http_host_on_the_network(monkeypatch):
    ip = _lan_ip()
    if ip is None:
        pytest.skip("this machine has no non-loopback address")
    hits: list[dict] = []

    async def record(request):
        hits.append(dict(request.headers))
        return web.json_response({})

    runner, url = await serve(record, host=ip)
    try:
        monkeypatch.setenv("DASHSCOPE_API_KEY", CANARY)
        with pytest.raises(ConfigError, match="plain http"):
            resolve_endpoint("dashscope", base_url=url)
    finally:
        await runner.cleanup()
    assert hits == []


# --- what a host sends back --------------------------------------------------------------------------------


async def test_an_echoed_key_is_scrubbed_from_errors_and_replies():
    async def echo(request):
        dump = "\n".join(f"{k}: {v}" for k, v in request.headers.items())
        if request.path == "/fail":
            return web.json_response({"code": "InvalidParameter", "message": f"bad request. You sent:\n{dump}"
                                      + " padding" * 2000, "echo_key": CANARY}, status=400)
        return web.json_response({"output": {"note": f"token={CANARY}", "auth": dump}})

    runner, url = await serve(echo)
    try:
        async with Transport(url, AUTH, error_mapper=ADAPTERS["dashscope"].map_error) as t:
            with pytest.raises(ProviderError) as err:
                await t.call(HttpCall("GET", "/fail"))
            ok = await t.call(HttpCall("GET", "/ok"))
    finally:
        await runner.cleanup()
    message = str(err.value)
    assert CANARY not in message and "Authorization: ***" in message
    assert len(message) < 800 and "more characters" in message        # 16 KB of echo, clipped
    assert CANARY not in repr(ok.body) and "Authorization: ***" in ok.body["output"]["auth"]


async def test_a_decompression_bomb_is_cut_off_early():
    bomb = gzip.compress(b"\0" * (200 << 20), compresslevel=9)        # ~200 KB on the wire, 200 MB inflated

    async def handler(request):
        return web.Response(body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})

    runner, url = await serve(handler)
    tracemalloc.start()
    try:
        async with Transport(url, AUTH, retry=RetryPolicy(attempts=2, base_delay_s=0)) as t:
            with pytest.raises(ProviderError, match="over 1024 KB") as err:
                await t.call(HttpCall("GET", "/poll"))
            with pytest.raises(SubmitUncertain, match="over 1024 KB"):
                await t.submit(HttpCall("POST", "/submit", json={}))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await runner.cleanup()
    assert CANARY not in str(err.value)
    assert peak < 40 << 20, f"peak {peak >> 20} MB"


@pytest.mark.parametrize("garbage", [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nBad\x00Header: x\r\n\r\nhello",
                                     b"NOT-HTTP \x01\x02\r\n\r\n",
                                     b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnotgzip!!"])
async def test_a_malformed_reply_never_escapes_as_an_aiohttp_error(garbage):
    server, url, seen = await serve_raw(garbage)
    try:
        async with Transport(url, AUTH, retry=RetryPolicy(attempts=2, base_delay_s=0)) as t:
            with pytest.raises(SubmitUncertain) as uncertain:
                await t.submit(HttpCall("POST", "/submit", json={"p": 1}))
            with pytest.raises(ProviderError) as failed:
                await t.call(HttpCall("GET", "/poll"))
    finally:
        server.close()
        await server.wait_closed()
    assert seen and CANARY.encode() in seen[0]          # the key really was sent to this host
    for exc in (uncertain.value, failed.value):
        chain = []
        while exc is not None:                   # everything a traceback or a logger could reach
            chain.append(exc)
            exc = exc.__cause__ or exc.__context__
        assert not [e for e in chain if type(e).__module__.startswith("aiohttp")], chain
        assert CANARY not in "".join(repr(e) + str(e) + repr(vars(e)) for e in chain)


# --- task ids ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", [n for n in ADAPTERS if n != "simulator"])
def test_task_ids_are_quoted_and_shape_checked_in_every_adapter(provider):
    adapter = ADAPTERS[provider]
    call = adapter.poll_call("abc-123_X.y:z")
    assert "abc-123_X.y:z" in unquote(call.path) + str(call.params or "")
    for hostile in ("../../x?y", "a/b", "x#frag", "", " ", "a" * 300, "..", "%2e%2e"):
        with pytest.raises(ValidationError, match="is not a task id"):
            adapter.poll_call(hostile)
        if adapter.caps.supports_cancel:
            with pytest.raises(ValidationError, match="is not a task id"):
                adapter.cancel_call(hostile)


# --- result URLs -------------------------------------------------------------------------------------------


def test_result_urls_may_point_at_this_machine_only_for_a_host_on_this_machine():
    local, remote, lan = "http://127.0.0.1:8188", "https://api.example.com", "https://192.168.1.20"
    check_fetch_url("http://127.0.0.1:9/files/x.mp4", local)
    check_fetch_url("https://cdn.example.com/x.mp4?sig=1", remote)
    check_fetch_url("https://10.0.0.7/x.mp4", lan)                 # a host on the LAN may serve from the LAN
    for url in ("http://127.0.0.1:8188/api/view", "https://localhost/x", "https://[::1]/x",
                "https://[::ffff:127.0.0.1]/x"):
        with pytest.raises(DownloadError, match="this machine"):
            check_fetch_url(url, remote)
    for url in ("https://10.0.0.7/x", "https://192.168.0.1/x", "https://169.254.169.254/latest/meta-data",
                "https://[fd00::1]/x", "https://[fe80::1]/x"):
        with pytest.raises(DownloadError, match="private address"):
            check_fetch_url(url, remote)
    with pytest.raises(DownloadError, match="this machine"):
        check_fetch_url("https://127.0.0.1/x", lan)
    for url in ("http://cdn.example.com/x.mp4", "file:///etc/passwd", "ftp://x/v.mp4", "https:///nohost"):
        with pytest.raises(DownloadError):
            check_fetch_url(url, remote)


async def test_a_public_host_cannot_redirect_a_download_into_this_machine(tmp_path):
    hits: list[str] = []

    async def local_service(request):
        hits.append(request.path)
        return web.Response(body=b"private")

    runner, url = await serve(local_service)
    try:
        async with Transport("https://api.example.com", AUTH) as t:
            with pytest.raises(DownloadError, match="this machine"):
                with open(tmp_path / "out", "wb") as fh:
                    await t.download(url + "/secret", fh, max_bytes=1 << 20)
            # A name that resolves to this machine is refused when the connection is made.
            name = _local_name()
            if name is not None:
                with pytest.raises(DownloadError, match="not a public address"):
                    with open(tmp_path / "out", "wb") as fh:
                        await t.download(url.replace("http://127.0.0.1", f"https://{name}") + "/x", fh,
                                         max_bytes=1 << 20)
    finally:
        await runner.cleanup()
    assert hits == []


def test_urls_shown_or_stored_lose_userinfo_and_query():
    assert redact_url("https://user:pw@host.example:8443/p/v.mp4?X-Amz-Signature=abc") == \
        "https://host.example:8443/p/v.mp4?..."
    assert redact_url("http://127.0.0.1:9/dashscope") == "http://127.0.0.1:9/dashscope"


async def test_an_accepted_submit_with_a_path_shaped_task_id_is_uncertain_and_never_followed(monkeypatch, tmp_path):
    """A 2xx whose task id is `../../x?y` may be a paid job, but polling it would aim the keyed request at another
    path of the host: it is recorded as uncertain (not as a job to follow) and nothing more is sent."""
    from happyhorse.engine.ledger import Ledger, LedgerStatus
    from happyhorse.engine.request import GenerationRequest
    from happyhorse.engine.runner import JobRunner, RunOptions
    from happyhorse.providers.registry import all_caps

    seen: list[str] = []

    async def host(request):
        seen.append(f"{request.method} {request.path_qs}")
        if request.method == "POST":
            return web.json_response({"id": "../../admin/keys?all=1", "status": "pending"}, status=202)
        return web.json_response({"error": {"message": "not found"}}, status=404)

    runner, url = await serve(host)
    monkeypatch.setenv("GETIMG_API_KEY", CANARY)
    ledger = Ledger(tmp_path / "l.sqlite3")
    try:
        jobs = JobRunner(resolve_endpoint("getimg", base_url=url), ledger=ledger, all_caps=all_caps())
        with pytest.raises(SubmitUncertain, match="not one .*'../../admin/keys"):
            await jobs.run(GenerationRequest(mode="t2v", version="1.0", prompt="a horse", duration_s=3),
                           RunOptions(out_dir=str(tmp_path)))
    finally:
        await runner.cleanup()
    assert [s.split()[0] for s in seen] == ["POST"]                   # no poll, no cancel to the hostile path
    (row,) = ledger.recent()
    assert row.status == LedgerStatus.UNCERTAIN and not row.task_id
