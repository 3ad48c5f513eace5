"""HTTP transport for provider calls: redacted logs, safe retries, and a guarded result download.

Retry rules (why they differ):
- Polls, cancels and downloads are idempotent: retried on 408/429/5xx and connection errors with capped
  exponential backoff and jitter, honouring Retry-After and rate-limit reset headers.
- The paid submit is retried ONLY when the request provably never reached the host (the TCP connection was
  refused or the name did not resolve), or the host refused it with 429. Any later failure is ambiguous and
  raises SubmitUncertain.
- A reply's status is what the adapter reads it to be (`reply_status`): a host that puts 429 / 5xx inside an
  HTTP 200 envelope (APIXO) is retried like one that sends them as HTTP statuses.

Every reply is untrusted input: its body is read up to MAX_REPLY_BYTES (counted after decompression), and the
key plus any credential header value is scrubbed from it before an adapter, a log line, an error message or
the ledger sees it. aiohttp's own exceptions carry the request (headers, key included) in their repr, so none
leaves this module: each becomes one of ours, built outside the `except` block so no chain leads back to it.
"""
from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import json
import logging
import random
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urljoin, urlsplit

import aiohttp

from .errors import ConfigError, DownloadError, ProviderError, SubmitUncertain
from .redact import Redactor, clip, clip_value, redact_url

log = logging.getLogger("happyhorse.http")

RETRY_STATUSES = {408, 429, 500, 502, 503, 504}
# JSON APIs answer in kilobytes; a megabyte is already generous. Counted after gzip/deflate/br decoding.
MAX_REPLY_BYTES = 1 << 20


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
    remaining = (lower.get("x-ratelimit-remaining") or lower.get("ratelimit-remaining") or "").strip()
    if remaining and remaining != "0":
        # The window still has room (getimg sends these headers on every reply): its reset time says nothing
        # about this failure, so a 5xx is retried with the usual backoff, not held until the window ends.
        return None
    if reset:
        try:
            n = float(reset)
        except ValueError:
            return None
        # Hosts send either seconds-to-wait or an epoch timestamp.
        return max(0.0, n - time.time()) if n > 1e9 else n
    return None


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    # ::ffff:127.0.0.1 is 127.0.0.1 (Python before 3.13 does not say so itself).
    return ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    ip = _ip(host)
    return ip is not None and ip.is_loopback


def is_local_network(url: str) -> bool:
    """The host is this machine or a private / link-local address (a LAN proxy, a local gateway)."""
    host = urlsplit(url).hostname or ""
    ip = _ip(host)
    return is_loopback(url) or (ip is not None and not ip.is_global)


def check_keyed_url(base_url: str, provider: str) -> None:
    """The key travels only over https, or over http to this machine (the simulator, a local proxy)."""
    parts = urlsplit(base_url)
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(base_url)):
        return
    raise ConfigError(f"Refusing to send the {provider} API key to {redact_url(base_url)} over plain http, where "
                      f"anyone on the way can read it. Use an https:// base URL (http:// only for this machine: "
                      f"localhost, 127.0.0.1, [::1]): fix --base-url or HAPPYHORSE_{provider.upper()}_BASE_URL.")


def check_fetch_url(url: str, base_url: str) -> None:
    """Which result URLs a host at base_url may send us to.

    https anywhere public; http only on this machine. This machine only when the host itself runs here, and
    private or link-local addresses only when the host is itself on this machine or network: otherwise a
    hostile host could make us probe the user's machine or network (errors tell it the status).
    """
    parts = urlsplit(url)
    scheme, host = parts.scheme, parts.hostname or ""
    if not host or not (scheme == "https" or (scheme == "http" and is_loopback(url))):
        raise DownloadError(f"Refusing to fetch the result from {scheme or 'an invalid'} URL: only https "
                            f"(or http on localhost) is allowed", permanent=True)
    if is_loopback(url) and not is_loopback(base_url):
        raise DownloadError(f"Refusing to fetch the result from this machine ({redact_url(url)}): the host at "
                            f"{redact_url(base_url)} is not on this machine", permanent=True)
    ip = _ip(host)
    if ip is not None and not ip.is_global and not is_local_network(base_url):
        raise DownloadError(f"Refusing to fetch the result from the private address {ip}: the host at "
                            f"{redact_url(base_url)} is not on this network", permanent=True)


class _PublicOnlyResolver(aiohttp.abc.AbstractResolver):
    """Resolves names for result downloads from a public host, refusing names that lead to private, loopback
    or link-local addresses. Checked at connect time, so DNS rebinding between a check and the fetch cannot
    slip through; every redirect hop connects through it too."""

    def __init__(self) -> None:
        self._inner = aiohttp.DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list:
        infos = await self._inner.resolve(host, port, family)
        for info in infos:
            ip = _ip(info["host"])
            if ip is None or not ip.is_global:
                raise OSError(f"{host} resolves to {info['host']}, which is not a public address")
        return infos

    async def close(self) -> None:
        await self._inner.close()


class _Failure(Exception):
    """A transport failure without aiohttp's exception (whose repr carries the request headers)."""

    def __init__(self, detail: str, *, sent: bool, retryable: bool = True):
        super().__init__(detail)
        self.detail, self.sent, self.retryable = detail, sent, retryable


class Transport:
    """Sends HttpCalls for one provider endpoint. Never logs or raises with header values."""

    def __init__(self, base_url: str, auth_headers: dict[str, str], *, session: aiohttp.ClientSession | None = None,
                 retry: RetryPolicy | None = None, timeout_s: float = 60.0,
                 error_mapper: Callable[[HttpReply], ProviderError] | None = None,
                 reply_status: Callable[[HttpReply], int] | None = None,
                 sleep: Callable[[float], Any] | None = None, max_reply_bytes: int = MAX_REPLY_BYTES):
        self.base_url = base_url.rstrip("/")
        self._auth = dict(auth_headers)
        self._redactor = Redactor(self._auth.values())
        self._session = session
        self._own_session = session is None
        self.retry = retry or RetryPolicy()
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=15)
        self.error_mapper = error_mapper
        self._reply_status = reply_status
        self._sleep = sleep or asyncio.sleep
        self.max_reply_bytes = max_reply_bytes

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

    def host_text(self, text: str) -> str:
        """Text that came from a host or the network, fit to show: scrubbed of the key, on one line, clipped."""
        return clip(" ".join(self._redactor.text(text).split()))

    async def _send_once(self, call: HttpCall) -> HttpReply:
        """One exchange. Raises only _Failure (never an aiohttp exception, whose repr carries the headers)."""
        try:
            return await self._exchange(call)
        except _Failure:
            raise
        except aiohttp.InvalidURL:
            failure = _Failure(f"the URL {redact_url(self.url_for(call))} is not valid", sent=False, retryable=False)
        except aiohttp.ClientConnectorCertificateError:
            failure = _Failure("its TLS certificate is not trusted", sent=False, retryable=False)
        except aiohttp.ClientConnectorError as exc:
            # Connecting failed (refused, unresolvable): no byte of the request left this machine.
            failure = _Failure(self.host_text(str(exc.os_error or type(exc).__name__)), sent=False)
        except aiohttp.ClientResponseError as exc:
            # Raised while parsing a malformed reply; its message quotes the host's bytes.
            failure = _Failure(f"{type(exc).__name__} {exc.status}: {self.host_text(exc.message)}", sent=True)
        except (aiohttp.ClientError, OSError) as exc:
            failure = _Failure(f"{type(exc).__name__}: {self.host_text(str(exc))}", sent=True)
        except asyncio.TimeoutError:
            failure = _Failure("timed out", sent=True)
        raise failure   # outside the except blocks: no __context__ leads back to aiohttp's exception

    async def _exchange(self, call: HttpCall) -> HttpReply:
        assert self._session is not None, "use Transport as an async context manager"
        headers = {**self._auth, **call.headers}
        async with self._session.request(call.method, self.url_for(call), json=call.json, params=call.params,
                                         headers=headers, timeout=self.timeout, allow_redirects=False) as resp:
            raw = bytearray()
            while chunk := await resp.content.read(1 << 16):      # decompressed bytes
                raw += chunk
                if len(raw) > self.max_reply_bytes:
                    raise _Failure(f"its reply was over {self.max_reply_bytes >> 10} KB (HTTP {resp.status}); "
                                   f"an API reply is a few KB", sent=True, retryable=False)
            text = self._redactor.text(raw.decode("utf-8", errors="replace"))
            try:
                body: Any = json.loads(text) if text.strip() else None
            except json.JSONDecodeError:
                body = text
            else:
                body = self._redactor.value(body)     # also covers keys echoed inside JSON escapes
            log.debug("%s %s -> %s", call.method, redact_url(self.url_for(call)), resp.status)
            return HttpReply(resp.status, self._redactor.value(dict(resp.headers)), body)

    def _effective(self, reply: HttpReply) -> HttpReply:
        """The reply with the status the host meant (an in-body code where the adapter reads one)."""
        status = self._reply_status(reply) if self._reply_status is not None else reply.status
        return reply if status == reply.status else HttpReply(status, reply.headers, reply.body)

    def _error(self, reply: HttpReply) -> ProviderError:
        # Error text is shown and stored: every host-provided string is clipped first.
        reply = HttpReply(reply.status, reply.headers, clip_value(reply.body))
        if self.error_mapper is not None:
            return self.error_mapper(reply)
        return ProviderError(f"HTTP {reply.status}", kind="server" if reply.status >= 500 else "bad_request",
                             status=reply.status)

    async def call(self, call: HttpCall, *, ok: tuple[int, ...] = (200,)) -> HttpReply:
        """An idempotent call: retried on transient failures."""
        last: ProviderError | _Failure | None = None
        for attempt in range(self.retry.attempts):
            try:
                raw = await self._send_once(call)
            except _Failure as failure:
                last = failure
                if not failure.retryable:
                    break
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
        tries = f" after {attempt + 1} tries" if attempt else ""
        raise ProviderError(f"Could not get an answer from {redact_url(self.base_url)}{tries}: "
                            f"{last.detail if last else 'no attempt made'}; check the network or the base URL",
                            kind="server" if last is None or last.retryable else "protocol")

    async def submit(self, call: HttpCall, *, ok: tuple[int, ...] = (200,)) -> HttpReply:
        """The paid call. Re-sent only when it provably never reached the host."""
        for attempt in range(self.retry.attempts):
            try:
                reply = await self._send_once(call)
            except _Failure as failure:
                if failure.sent:
                    raise SubmitUncertain(
                        f"The submit to {redact_url(self.base_url)} broke off after it was sent ({failure.detail}); "
                        f"the provider may have accepted it. It was NOT re-sent, to avoid paying twice. Check "
                        f"`happyhorse jobs list` and the provider's dashboard before retrying.") from None
                if failure.retryable and attempt + 1 < self.retry.attempts:
                    await self._sleep(self.retry.delay(attempt, None))
                    continue
                raise ProviderError(f"Could not connect to {redact_url(self.base_url)}: {failure.detail}. "
                                    f"Nothing was submitted; check the network or the base URL.",
                                    kind="server") from None
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
        """Stream a result into dest_fh (no auth headers sent). Follows at most 5 redirects, each checked against
        check_fetch_url; for a host not on this network, names must resolve to public addresses."""
        connector = None if is_local_network(self.base_url) else aiohttp.TCPConnector(resolver=_PublicOnlyResolver())
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                return await self._fetch(session, url, dest_fh, max_bytes, on_bytes)
        except DownloadError:
            raise
        except aiohttp.ClientConnectorError as exc:
            failure = f"could not connect ({self.host_text(str(exc.os_error or type(exc).__name__))})"
        except aiohttp.ClientResponseError as exc:
            failure = f"{type(exc).__name__} {exc.status}: {self.host_text(exc.message)}"
        except (aiohttp.ClientError, OSError) as exc:
            failure = f"{type(exc).__name__}: {self.host_text(str(exc))}"
        except asyncio.TimeoutError:
            failure = "timed out"
        raise DownloadError(f"Downloading the result from {redact_url(url)} failed: {failure}")

    async def _fetch(self, session: aiohttp.ClientSession, url: str, dest_fh, max_bytes: int,
                     on_bytes: Callable[[int], None] | None) -> int:
        current = url
        for _ in range(6):
            check_fetch_url(current, self.base_url)
            async with session.get(current, allow_redirects=False,
                                   timeout=aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=60)) as resp:
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
