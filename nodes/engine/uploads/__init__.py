"""Get every input image or video to the chosen provider: a data URI, the provider's own temporary store, or a
presigned URL on the user's S3-compatible bucket (choice.py says which, and why in that order).

Everything that can fail without the network fails before anything is sent: the way for each input is
planned first. Each distinct file is uploaded at most once per destination while its earlier URL stays valid
(cache.py).
"""
from __future__ import annotations

import base64
import mimetypes
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..http import Transport
from ..protocol import MediaRef
from ..request import GenerationRequest, MediaInput
from .choice import (AUTO, DATA_URI, INLINE_MAX_BYTES, PROVIDER_STORE, S3, UPLOAD_CHOICES, check_uploadable,
                     plan_uploads)
from .s3 import ENV as S3_ENV, S3Bucket, S3Settings
from .store import ProviderStore, StoreForm

__all__ = ["AUTO", "DATA_URI", "INLINE_MAX_BYTES", "PROVIDER_STORE", "S3", "S3_ENV", "UPLOAD_CHOICES",
           "S3Settings", "StoreForm", "UploadCache", "check_uploadable", "data_uri", "plan_uploads",
           "prepare_media"]

if TYPE_CHECKING:
    from .cache import UploadCache


def __getattr__(name: str) -> Any:
    # The cache (and the SQLite it keeps) loads when an upload first needs it, not with the choice constants
    # that the node schemas and the CLI read at start-up.
    if name == "UploadCache":
        from .cache import UploadCache
        return UploadCache
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def media_mime(m: MediaInput) -> str:
    return m.mime or ("video/mp4" if m.kind == "video" else "image/png")


def data_uri(m: MediaInput) -> str:
    return f"data:{media_mime(m)};base64,{base64.b64encode(m.data or b'').decode('ascii')}"


async def prepare_media(req: GenerationRequest, endpoint: Any, transport: Transport, upload: str = AUTO, *,
                        settings: Settings | None = None, cache: UploadCache | None = None) -> list[MediaRef]:
    """Every input of req as endpoint's provider will receive it, in req.media() order.

    transport is the provider's (used, and opened, only for a provider-store upload policy). Raises
    ConfigError before any I/O when an input cannot reach this provider the way `upload` asks.
    """
    plan, bucket = plan_uploads(req, endpoint.adapter.caps, upload, settings)
    refs: list[MediaRef] = []
    async with AsyncExitStack() as stack:
        backends: dict[str, ProviderStore | S3Bucket] = {}
        for (role, m), way in zip(req.media(), plan):
            if way is None:
                url = m.url or ""
            elif way == DATA_URI:
                url = data_uri(m)
            else:
                if cache is None:
                    from .cache import UploadCache
                    cache = UploadCache()
                    stack.callback(cache.close)
                if way not in backends:
                    backend = ProviderStore(endpoint, transport, req) if way == PROVIDER_STORE else S3Bucket(bucket)
                    backends[way] = await stack.enter_async_context(backend)
                url = await _upload_once(backends[way], cache, role, m)
            refs.append(MediaRef(role, url))
    return refs


async def _upload_once(backend: ProviderStore | S3Bucket, cache: UploadCache, role: str, m: MediaInput) -> str:
    sha = m.sha256
    cached = cache.get(backend.scope, sha)
    if cached is not None:
        return cached
    mime = media_mime(m)
    # Named by content: no user file name leaves the machine, and equal bytes map to one object.
    filename = sha + (mimetypes.guess_extension(mime) or "")
    url, expires_at = await backend.upload(role, m, filename, mime)
    cache.put(backend.scope, sha, url, expires_at)
    return url
