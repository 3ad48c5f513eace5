"""HTTP transport for provider calls: redacted logs, safe retries, and a guarded result download.

Retry rules (why they differ):
- Polls, cancels and downloads are idempotent: retried on 408/429/5xx and connection errors with capped
  exponential backoff and jitter, honouring Retry-After and rate-limit reset headers.
- The paid submit is retried ONLY when the request provably never reached the host (the TCP connection was
  refused or the name did not resolve), or the host refused it with 429. Any later failure is ambiguous and
  raises SubmitUncertain.
- A reply's status is what the adapter reads it to be (`reply_status`): a host that puts 429 / 5xx inside an
  HTTP 200 envelope (APIXO) is retried like one that sends them as HTTP statuses.
"""
from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urljoin, urlsplit

import aiohttp

from .errors import DownloadError, ProviderError, SubmitUncertain

log = logging.getLogger("happyhorse.http")

RETRY_STATUSES = {408, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class HttpCall:
    """One request, relative to the provider's base URL. Built by adapters, sent by the engine."""

    method: str
    path: str
    json: Any = None
    params: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpReply:
    status: int
    headers: dict[str, str]
    body: Any                  # parsed JSON when the reply is JSON, else text

    def header(self, name: str) -> str | None:
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return None


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay_s * 4)
        backoff = min(self.max_delay_s, self.base_delay_s * (2 ** attempt))
        return backoff * (0.5 + random.random() / 2)   # jitter: spread clients apart


def retry_after_seconds(headers: dict[str, str]) -> float | None:
    """Seconds to wait, from Retry-After (seconds or HTTP date) or an X-RateLimit-Reset header."""
    lower = {k.lower(): v for k, v in headers.items()}
    value = lower.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if value else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time())
    reset = lower.get("x-ratelimit-reset") or lower.get("ratelimit-reset")
    if reset:
        try:
            n = float(reset)
        except ValueError:
            return None
        # Hosts send either seconds-to-wait or an epoch timestamp.
        return max(0.0, n - time.time()) if n > 1e9 else n
    return None


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_fetch_url(url: str) -> None:
    """Results are fetched over https only (http only on this machine's loopback)."""
    scheme = urlsplit(url).scheme
    if scheme == "https" or (scheme == "http" and is_loopback(url)):
        return
    raise DownloadError(f"Refusing to fetch the result from {scheme or 'an invalid'} URL: only https "
                        f"(or http on localhost) is allowed")


def redact_url(url: str) -> str:
    """Drop query strings (signed URLs carry credentials) from anything logged or shown."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?..." if parts.query else "")


class Transport:
    """Sends HttpCalls for one provider endpoint. Never logs or raises with header values."""

    def __init__(self, base_url: str, auth_headers: dict[str, str], *, session: aiohttp.ClientSession | None = None,
                 retry: RetryPolicy | None = None, timeout_s: float = 60.0,
                 error_mapper: Callable[[HttpReply], ProviderError] | None = None,
                 reply_status: Callable[[HttpReply], int] | None = None,
                 sleep: Callable[[float], Any] | None = None):
        self.base_url = base_url.rstrip("/")
        self._auth = dict(auth_headers)
        self._session = session
        self._own_session = session is None
        self.retry = retry or RetryPolicy()
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=15)
        self.error_mapper = error_mapper
        self._reply_status = reply_status
        self._sleep = sleep or asyncio.sleep

    async def __aenter__(self) -> "Transport":
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def url_for(self, call: HttpCall) -> str:
        return self.base_url + call.path

    async def _send_once(self, call: HttpCall) -> HttpReply:
        assert self._session is not None, "use Transport as an async context manager"
        headers = {**self._auth, **call.headers}
        async with self._session.request(call.method, self.url_for(call), json=call.json, params=call.params,
                                         headers=headers, timeout=self.timeout, allow_redirects=False) as resp:
            raw = await resp.read()
            text = raw.decode("utf-8", errors="replace")
            try:
                body: Any = json.loads(text) if text.strip() else None
            except json.JSONDecodeError:
                body = text
            log.debug("%s %s -> %s", call.method, redact_url(self.url_for(call)), resp.status)
            return HttpReply(resp.status, dict(resp.headers), body)

    def _effective(self, reply: HttpReply) -> HttpReply:
        """The reply with the status the host meant (an in-body code where the adapter reads one)."""
        status = self._reply_status(reply) if self._reply_status is not None else reply.status
        return reply if status == reply.status else HttpReply(status, reply.headers, reply.body)

    def _error(self, reply: HttpReply) -> ProviderError:
        if self.error_mapper is not None:
            return self.error_mapper(reply)
        return ProviderError(f"HTTP {reply.status}", kind="server" if reply.status >= 500 else "bad_request",
                             status=reply.status)

    async def call(self, call: HttpCall, *, ok: tuple[int, ...] = (200,)) -> HttpReply:
        """An idempotent call: retried on transient failures."""
        last: Exception | None = None
        for attempt in range(self.retry.attempts):
            try:
                raw = await self._send_once(call)
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                last = exc
                if attempt + 1 < self.retry.attempts:       # no wait after the last try: report at once
                    await self._sleep(self.retry.delay(attempt, None))
                continue
            reply = self._effective(raw)
            if reply.status in ok:
                return raw
            err = self._error(reply)
            if reply.status in RETRY_STATUSES and attempt + 1 < self.retry.attempts:
                last = err
                await self._sleep(self.retry.delay(attempt, retry_after_seconds(reply.headers)))
                continue
            raise err
        if isinstance(last, ProviderError):
            raise last
        raise ProviderError(f"Could not reach {redact_url(self.base_url)} after {self.retry.attempts} tries "
                            f"({type(last).__name__}); check the network or the base URL", kind="server")

    async def submit(self, call: HttpCall, *, ok: tuple[int, ...] = (200,)) -> HttpReply:
        """The paid call. Re-sent only when it provably never reached the host."""
        for attempt in range(self.retry.attempts):
            try:
                reply = await self._send_once(call)
            except aiohttp.ClientConnectorError as exc:
                # Connecting failed: no byte of the request left this machine, so trying again is safe.
                if attempt + 1 < self.retry.attempts:
                    await self._sleep(self.retry.delay(attempt, None))
                    continue
                raise ProviderError(f"Could not connect to {redact_url(self.base_url)}: {exc.os_error or exc}. "
                                    f"Nothing was submitted; check the network or the base URL.",
                                    kind="server") from None
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                raise SubmitUncertain(
                    f"The submit to {redact_url(self.base_url)} broke off after it was sent "
                    f"({type(exc).__name__}); the provider may have accepted it. It was NOT re-sent, to avoid "
                    f"paying twice. Check `happyhorse jobs list` and the provider's dashboard before retrying.")
            raw, reply = reply, self._effective(reply)
            if reply.status in ok:
                return raw
            err = self._error(reply)
            # 429 means the host refused the submit before taking it: safe to wait and send again.
            if reply.status == 429 and attempt + 1 < self.retry.attempts:
                await self._sleep(self.retry.delay(attempt, retry_after_seconds(reply.headers)))
                continue
            raise err
        raise AssertionError("unreachable")

    async def download(self, url: str, dest_fh, *, max_bytes: int, on_bytes: Callable[[int], None] | None = None
                       ) -> int:
        """Stream a result into dest_fh (no auth headers sent). Follows at most 5 redirects, each checked."""
        assert self._session is not None
        current = url
        for _ in range(6):
            check_fetch_url(current)
            async with self._session.get(current, allow_redirects=False,
                                         timeout=aiohttp.ClientTimeout(total=None, sock_connect=15,
                                                                       sock_read=60)) as resp:
                if resp.status in (301, 302, 303, 307, 308):
                    location = resp.headers.get("Location")
                    if not location:
                        raise DownloadError("The result URL redirected without a Location")
                    current = urljoin(current, location)
                    continue
                if resp.status != 200:
                    raise DownloadError(f"Downloading the result failed: HTTP {resp.status} from "
                                        f"{redact_url(current)}")
                declared = resp.content_length
                if declared is not None and declared > max_bytes:
                    raise DownloadError(f"The result is {declared / 1e6:.0f} MB, over the {max_bytes / 1e6:.0f} MB "
                                        f"cap; raise the cap if this is expected", permanent=True)
                total = 0
                async for chunk in resp.content.iter_chunked(1 << 16):
                    total += len(chunk)
                    if total > max_bytes:
                        raise DownloadError(f"The result exceeded the {max_bytes / 1e6:.0f} MB cap; nothing kept",
                                            permanent=True)
                    dest_fh.write(chunk)
                    if on_bytes:
                        on_bytes(total)
                if declared is not None and total != declared:
                    raise DownloadError(f"The download was cut short ({total} of {declared} bytes)")
                return total
        raise DownloadError("The result URL redirected too many times")
