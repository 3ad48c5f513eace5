"""Which way each input file reaches the provider. Pure: no I/O, cheap enough to run in validation.

upload="auto" picks, for each input given as bytes (URLs are passed on unchanged):
  1. a data URI, when the provider accepts them and the file is at most INLINE_MAX_BYTES: nothing is stored
     anywhere and there is no extra round trip;
  2. the user's S3-compatible bucket, when one is configured: the user's own choice wins over a host's store;
  3. the provider's own temporary store, when it has one (DashScope's oss://, in Singapore and Beijing only):
     free and nothing to configure, but Alibaba calls it "for development and testing only, not production or
     high concurrency";
  4. a data URI even for a larger file, when the provider accepts them and nothing above applies;
  5. otherwise a ConfigError naming exactly what to configure, raised before anything is sent.
upload="data-uri" | "provider-store" | "s3" forces that way for every file, or fails saying why it cannot.
"""
from __future__ import annotations

import functools
from typing import Callable

from ..capabilities import ProviderCaps
from ..config import Settings, config_paths
from ..errors import ConfigError
from ..request import GenerationRequest, MediaInput
from .s3 import CREDENTIALS_HINT, ENV, S3Settings, import_boto3

AUTO, DATA_URI, PROVIDER_STORE, S3 = "auto", "data-uri", "provider-store", "s3"
UPLOAD_CHOICES: tuple[str, ...] = (AUTO, DATA_URI, PROVIDER_STORE, S3)
# Above this, auto prefers an upload to inlining: a data URI grows the JSON body by a third, and hosts cap
# request bodies (~10 MB is common). One line to change.
INLINE_MAX_BYTES = 7 * 1024 * 1024


def choose_backend(role: str, m: MediaInput, caps: ProviderCaps, upload: str,
                   bucket: Callable[[], S3Settings | None], settings: Settings) -> str | None:
    """None when m is already a URL, else DATA_URI, PROVIDER_STORE or S3. Raises ConfigError when no way works.

    bucket() reads the bucket settings; it is called only when a bucket could be used, so a t2v job or a
    data-URI host never trips over a half-finished bucket configuration.
    """
    if m.data is None:
        return None
    name = caps.display_name
    if upload == AUTO:
        if caps.accepts_data_uri and len(m.data) <= INLINE_MAX_BYTES:
            return DATA_URI
        if bucket() is not None:
            return S3
        if caps.has_temp_store:
            return PROVIDER_STORE
        if caps.accepts_data_uri:
            return DATA_URI
        raise ConfigError(f"{name} only takes public URLs, and no upload bucket is configured to put the {{role}} "
                          f"file on. {_bucket_howto(settings)} Or pass a public URL instead of the file.", role=role)
    if upload == DATA_URI and not caps.accepts_data_uri:
        raise ConfigError(f"{name} rejects data: URIs, so {{upload}} '{DATA_URI}' cannot send the {{role}}; use "
                          f"'{AUTO}' or '{S3}' (an upload bucket).", role=role, upload="upload")
    if upload == PROVIDER_STORE and not caps.has_temp_store:
        raise ConfigError(f"{name} has no upload store of its own, so {{upload}} '{PROVIDER_STORE}' cannot send "
                          f"the {{role}}; use '{AUTO}' or '{S3}' (an upload bucket).", role=role, upload="upload")
    if upload == S3 and bucket() is None:
        raise ConfigError(f"{{upload}} '{S3}' was asked for the {{role}}, but no bucket is configured. "
                          f"{_bucket_howto(settings)}", role=role, upload="upload")
    return upload


def _bucket_howto(settings: Settings) -> str:
    config = settings.file_path or config_paths()[-1]
    return (f"Set {ENV['bucket']} (plus {ENV['endpoint_url']} for Cloudflare R2, MinIO or Backblaze B2, and "
            f"{ENV['region']} where needed), or put bucket = \"...\" under [upload.s3] in {config}; "
            f"{CREDENTIALS_HINT}. See docs/uploads.md.")


def plan_uploads(req: GenerationRequest, caps: ProviderCaps, upload: str = AUTO, settings: Settings | None = None
                 ) -> tuple[list[str | None], S3Settings | None]:
    """The way each of req.media() goes, in order, and the bucket when one is used. Raises ConfigError (nothing
    is sent) if any input cannot reach caps' host."""
    if upload not in UPLOAD_CHOICES:
        raise ConfigError(f"{{upload}} {upload!r} is not a choice; use one of {', '.join(UPLOAD_CHOICES)}",
                          upload="upload")
    media = req.media()
    if all(m.data is None for _, m in media):
        return [None] * len(media), None        # nothing to upload: no settings read at all
    settings = settings or Settings.load()
    bucket = functools.cache(lambda: S3Settings.load(settings))
    plan = [choose_backend(role, m, caps, upload, bucket, settings) for role, m in media]
    if S3 not in plan:
        return plan, None
    import_boto3()      # a configured bucket without boto3 must fail here, not half-way through a run
    return plan, bucket()


def check_uploadable(req: GenerationRequest, caps: ProviderCaps, upload: str = AUTO,
                     settings: Settings | None = None) -> None:
    """Pre-flight for validation and price-only checks: raise ConfigError if some input cannot reach caps' host."""
    plan_uploads(req, caps, upload, settings)
