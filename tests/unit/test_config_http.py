"""Keys, base URLs, redaction and the retry rules of the transport (against a real loopback server)."""
import asyncio

import pytest
from aiohttp import web

from happyhorse.engine.config import Secret
from happyhorse.engine.errors import ConfigError, ProviderError, SubmitUncertain
from happyhorse.engine.http import HttpCall, RetryPolicy, Transport, retry_after_seconds
from happyhorse.providers.registry import resolve_endpoint


def test_missing_key_names_the_variable():
    with pytest.raises(ConfigError) as err:
        resolve_endpoint("dashscope")
    assert "DASHSCOPE_API_KEY" in str(err.value)


def test_key_from_env_and_file(tmp_path, monkeypatch):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('[keys]\ndashscope = "sk-from-file"\n[base_urls]\ndashscope = "https://dashscope.aliyuncs.com"\n')
    monkeypatch.setenv("HAPPYHORSE_CONFIG", str(cfg))
    ep = resolve_endpoint("dashscope")
    assert ep.key.reveal() == "sk-from-file" and ep.base_url == "https://dashscope.aliyuncs.com"
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-from-env")
    monkeypatch.setenv("HAPPYHORSE_DASHSCOPE_BASE_URL", "https://dashscope-us.aliyuncs.com/")
    ep = resolve_endpoint("dashscope")
    assert ep.key.reveal() == "sk-from-env" and ep.base_url == "https://dashscope-us.aliyuncs.com"
    assert resolve_endpoint("dashscope", base_url="http://127.0.0.1:9/x").base_url == "http://127.0.0.1:9/x"


def test_secret_never_prints():
    s = Secret("sk-very-secret")
    assert "sk-very-secret" not in repr(s) + str(s) + f"{s}" + repr({"k": s})


def test_bad_base_url_rejected(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-x")
    monkeypatch.setenv("HAPPYHORSE_DASHSCOPE_BASE_URL", "ftp://x")
    with pytest.raises(ConfigError):
        resolve_endpoint("dashscope")


def test_retry_after_parsing():
    assert retry_after_seconds({"Retry-After": "3"}) == 3
    assert retry_after_seconds({"x-ratelimit-reset": "7"}) == 7
    assert retry_after_seconds({"X-RateLimit-Reset": "7", "X-RateLimit-Remaining": "0"}) == 7
    # Room left in the window (getimg sends the headers on every reply): a 5xx is not held until the reset.
    assert retry_after_seconds({"X-RateLimit-Reset": "60", "X-RateLimit-Remaining": "99"}) is None
    assert retry_after_seconds({}) is None


class Flaky:
    """A real loopback server that fails the first N calls in a chosen way."""

    def __init__(self, fail_status: int, failures: int, headers=None):
        self.fail_status, self.failures, self.headers, self.calls = fail_status, failures, headers or {}, 0

    async def handle(self, request):
        self.calls += 1
        if self.calls <= self.failures:
            return web.json_response({"code": "x", "message": "flaky"}, status=self.fail_status,
                                     headers=self.headers)
        return web.json_response({"ok": True, "auth_seen": "Authorization" in request.headers})


async def serve(handler):
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


async def test_poll_retries_5xx_and_honours_retry_after():
    flaky = Flaky(503, 2, {"Retry-After": "0"})
    runner, url = await serve(flaky.handle)
    slept = []

    async def fake_sleep(s):
        slept.append(s)

    try:
        async with Transport(url, {"Authorization": "Bearer k"}, sleep=fake_sleep) as t:
            reply = await t.call(HttpCall("GET", "/poll"))
        assert reply.body["ok"] and flaky.calls == 3 and slept == [0.0, 0.0]
    finally:
        await runner.cleanup()


async def test_submit_not_resent_after_500():
    flaky = Flaky(500, 1)
    runner, url = await serve(flaky.handle)
    try:
        async with Transport(url, {}, retry=RetryPolicy(base_delay_s=0)) as t:
            with pytest.raises(ProviderError):
                await t.submit(HttpCall("POST", "/submit", json={}))
        assert flaky.calls == 1
    finally:
        await runner.cleanup()


async def test_submit_resent_after_429_which_means_not_accepted():
    flaky = Flaky(429, 1, {"Retry-After": "0"})
    runner, url = await serve(flaky.handle)
    try:
        async with Transport(url, {}) as t:
            reply = await t.submit(HttpCall("POST", "/submit", json={}))
        assert reply.status == 200 and flaky.calls == 2
    finally:
        await runner.cleanup()


async def test_submit_dropped_connection_is_uncertain_not_resent():
    calls = []

    async def drop(request):
        calls.append(1)
        request.transport.close()
        await asyncio.sleep(0.1)
        return web.Response()

    runner, url = await serve(drop)
    try:
        async with Transport(url, {}) as t:
            with pytest.raises(SubmitUncertain) as err:
                await t.submit(HttpCall("POST", "/submit", json={}))
        assert len(calls) == 1 and "NOT re-sent" in str(err.value)
    finally:
        await runner.cleanup()


async def test_submit_connection_refused_is_safe_to_retry_and_reports():
    async with Transport("http://127.0.0.1:9", {}, retry=RetryPolicy(attempts=2, base_delay_s=0)) as t:
        with pytest.raises(ProviderError) as err:
            await t.submit(HttpCall("POST", "/submit", json={}))
    assert "Nothing was submitted" in str(err.value)
