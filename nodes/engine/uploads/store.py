"""A provider's own temporary file store (DashScope: getPolicy, then a signed form POST to its OSS bucket).

The adapter stays I/O-free: it builds the policy call, parses the reply and describes the form (StoreForm);
this module sends them. The policy call goes through the engine's Transport (the provider's key, retries,
redacted logs); the form POST goes through a plain session, because the store host must never see the key.
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from ..errors import ProviderError, ValidationError, Violation
from ..http import MAX_REPLY_BYTES, HttpReply, Transport, is_loopback
from ..redact import clip, redact_url
from ..request import GenerationRequest, MediaInput

UPLOAD_TIMEOUT = aiohttp.ClientTimeout(total=900, sock_connect=15)


@dataclass(frozen=True)
class StoreForm:
    """One signed multipart upload into a provider's store, as the adapter describes it."""

    upload_url: str
    fields: tuple[tuple[str, str], ...]   # sent in this order; the file part follows them, last
    file_field: str
    media_url: str                        # what the submit then references (oss://...)
    lifetime_s: float                     # how long media_url stays usable
    max_bytes: int | None = None
    ok_status: int = 200


def account_tag(key_text: str) -> str:
    """A one-way tag telling accounts apart in the upload cache (files in a provider store belong to one
    account); the key itself is never stored."""
    return hashlib.sha256(key_text.encode()).hexdigest()[:16]


class ProviderStore:
    """One run's uploads into the provider's store; the upload policy is fetched once, on the first miss."""

    def __init__(self, endpoint: Any, transport: Transport, req: GenerationRequest):
        self.adapter = endpoint.adapter
        self.transport = transport
        self.policy_call = self.adapter.upload_policy_call(req)
        # A stored file is usable only by the same account and, at DashScope, the same model: the scope says both.
        self.scope = "|".join(("store", self.adapter.name, redact_url(transport.base_url), self.policy_call.path,
                               urlencode(sorted((self.policy_call.params or {}).items())),
                               account_tag(endpoint.key.reveal())))
        self._policy: Any = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "ProviderStore":
        await self.transport.__aenter__()
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc) -> None:
        if self._session is not None:
            await self._session.close()
        await self.transport.__aexit__(*exc)

    async def upload(self, role: str, m: MediaInput, filename: str, mime: str) -> tuple[str, float]:
        """Upload the bytes, return (the URL the submit uses, when it expires)."""
        assert self._session is not None, "use ProviderStore as an async context manager"
        if self._policy is None:
            self._policy = self.adapter.parse_upload_policy(await self.transport.call(self.policy_call))
        form: StoreForm = self.adapter.upload_form(self._policy, filename)
        name = self.adapter.caps.display_name
        size = len(m.data or b"")
        if form.max_bytes is not None and size > form.max_bytes:
            raise ValidationError([Violation(role, f"is {size / 1e6:.1f} MB; {name}'s upload store takes at most "
                                                   f"{form.max_bytes / 1e6:.0f} MB per file: shrink it (the "
                                                   f"re-encode fix) or use your own bucket (upload s3)")],
                                  provider=self.adapter.name)
        parts = urlsplit(form.upload_url)
        if not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback(form.upload_url))):
            raise ProviderError(f"{name} named an upload host that is not https ({redact_url(form.upload_url)}); "
                                f"refusing to send the file there", kind="protocol", provider=self.adapter.name)
        started = time.time()
        body = aiohttp.FormData()
        for field, value in form.fields:
            body.add_field(field, value)
        body.add_field(form.file_field, m.data or b"", filename=filename, content_type=mime)
        try:
            async with self._session.post(form.upload_url, data=body, allow_redirects=False,
                                          timeout=UPLOAD_TIMEOUT) as resp:
                if resp.status != form.ok_status:
                    text = clip((await resp.content.read(MAX_REPLY_BYTES)).decode("utf-8", "replace"), 2000)
                    raise self.adapter.map_upload_error(HttpReply(resp.status, dict(resp.headers), text))
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise ProviderError(f"Uploading the {role} to {name}'s store at {redact_url(form.upload_url)} failed "
                                f"({type(exc).__name__}); nothing was submitted. Check the network and run again.",
                                kind="server", provider=self.adapter.name) from None
        return form.media_url, started + form.lifetime_s
