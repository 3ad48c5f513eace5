"""The user's own S3-compatible bucket (AWS S3, Cloudflare R2, MinIO, Backblaze B2, ...): put the file, hand the
provider a short-lived presigned GET URL.

Settings come from HAPPYHORSE_S3_* environment variables or an [upload.s3] table in the config file (the
environment wins). Credentials are never read here: boto3 finds them through the standard AWS chain
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE or HAPPYHORSE_S3_PROFILE, instance roles). boto3 is an
optional dependency, imported only when a bucket is actually used.
"""
from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..errors import ConfigError
from ..redact import Redactor, clip
from ..request import MediaInput

ENV = {
    "bucket": "HAPPYHORSE_S3_BUCKET",
    "prefix": "HAPPYHORSE_S3_PREFIX",
    "endpoint_url": "HAPPYHORSE_S3_ENDPOINT_URL",
    "region": "HAPPYHORSE_S3_REGION",
    "expiry_s": "HAPPYHORSE_S3_EXPIRY_S",
    "addressing_style": "HAPPYHORSE_S3_ADDRESSING_STYLE",
    "profile": "HAPPYHORSE_S3_PROFILE",
}
DEFAULT_PREFIX = "happyhorse/"
DEFAULT_EXPIRY_S = 3600
# Providers fetch inputs at submit or when the job starts; shorter links could die in the queue. SigV4 presigned
# URLs cannot live longer than 7 days.
MIN_EXPIRY_S = 300
MAX_EXPIRY_S = 7 * 24 * 3600
ADDRESSING_STYLES = ("auto", "path", "virtual")
CREDENTIALS_HINT = ("credentials come from the standard AWS chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                    f"AWS_PROFILE or {ENV['profile']}")


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    prefix: str = DEFAULT_PREFIX
    endpoint_url: str | None = None       # None: AWS itself; R2, MinIO, B2 need theirs
    region: str | None = None             # None: boto3's default chain (AWS_DEFAULT_REGION, ~/.aws/config)
    expiry_s: int = DEFAULT_EXPIRY_S
    addressing_style: str = "auto"
    profile: str | None = None            # a named profile in ~/.aws (a name, never a secret)

    @classmethod
    def load(cls, settings: Settings) -> "S3Settings | None":
        """The configured bucket, or None when there is none."""
        upload = settings.section("upload")
        table = upload.get("s3") if isinstance(upload.get("s3"), dict) else {}

        def value(name: str) -> str | None:
            raw = os.environ.get(ENV[name])
            if raw is None or not raw.strip():
                raw = table.get(name)
            text = str(raw).strip() if raw is not None else ""
            return text or None

        bucket = value("bucket")
        if bucket is None:
            return None
        expiry_text = value("expiry_s") or str(DEFAULT_EXPIRY_S)
        try:
            expiry = int(expiry_text)
        except ValueError:
            expiry = -1
        if not MIN_EXPIRY_S <= expiry <= MAX_EXPIRY_S:
            raise ConfigError(f"{ENV['expiry_s']} (or [upload.s3] expiry_s) must be whole seconds "
                              f"{MIN_EXPIRY_S}-{MAX_EXPIRY_S}, got {expiry_text!r}")
        endpoint = value("endpoint_url")
        if endpoint is not None and not endpoint.startswith(("https://", "http://")):
            raise ConfigError(f"{ENV['endpoint_url']} must start with https:// (or http://), got {endpoint!r}")
        style = (value("addressing_style") or "auto").lower()
        if style not in ADDRESSING_STYLES:
            raise ConfigError(f"{ENV['addressing_style']} must be one of {', '.join(ADDRESSING_STYLES)}, "
                              f"got {style!r}")
        prefix = value("prefix")
        prefix = DEFAULT_PREFIX if prefix is None else prefix.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(bucket=bucket, prefix=prefix, endpoint_url=endpoint.rstrip("/") if endpoint else None,
                   region=value("region"), expiry_s=expiry, addressing_style=style, profile=value("profile"))

    @property
    def scope(self) -> str:
        """Names the destination for the upload cache."""
        return f"s3|{self.endpoint_url or 'aws'}|{self.bucket}|{self.prefix}"


# SigV4 request signatures and security tokens as they appear in an echoed request (header or query string).
_SIGNATURE = re.compile(r"(?i)((?:\bSignature|X-Amz-Signature|X-Amz-Security-Token)\s*[=:]\s*)[^\s,&\"'<]+")


def import_boto3() -> Any:
    try:
        import boto3
    except ImportError:
        raise ConfigError(f"An upload bucket is configured ({ENV['bucket']}) but boto3 is not installed: run "
                          f"`pip install boto3` in the Python that runs ComfyUI (or "
                          f"`pip install comfyui-happyhorse[s3]`).") from None
    return boto3


class S3Bucket:
    """One run's uploads into the configured bucket. Objects are named by content hash, so the same file
    always lands on the same key and a re-upload overwrites it with identical bytes."""

    def __init__(self, s3: S3Settings):
        self.settings = s3
        self.scope = s3.scope
        self._client: Any = None
        self._session: Any = None

    async def __aenter__(self) -> "S3Bucket":
        return self

    async def __aexit__(self, *exc) -> None:
        self._client = None

    def _make_client(self) -> Any:
        boto3 = import_boto3()
        from botocore.config import Config

        s = self.settings
        session = boto3.session.Session(profile_name=s.profile) if s.profile else boto3.session.Session()
        self._session = session
        # SigV4 everywhere: R2 and recent regions accept nothing else.
        config = Config(signature_version="s3v4", s3={"addressing_style": s.addressing_style})
        return session.client("s3", endpoint_url=s.endpoint_url, region_name=s.region, config=config)

    async def upload(self, role: str, m: MediaInput, filename: str, mime: str) -> tuple[str, float]:
        """Put the bytes, return (presigned GET URL, when it expires)."""
        import_boto3()
        from botocore.exceptions import BotoCoreError, ClientError

        s = self.settings
        key = s.prefix + filename
        # Taken before signing, so the recorded expiry is never later than the URL's own.
        expires_at = time.time() + s.expiry_s

        def put_and_sign() -> str:
            if self._client is None:
                self._client = self._make_client()
            self._client.put_object(Bucket=s.bucket, Key=key, Body=m.data, ContentType=mime)
            return self._client.generate_presigned_url("get_object", Params={"Bucket": s.bucket, "Key": key},
                                                       ExpiresIn=s.expiry_s)

        try:
            url = await asyncio.to_thread(put_and_sign)   # boto3 blocks; the event loop (and cancel) must not
        except ClientError as exc:
            err = exc.response.get("Error", {})
            detail = f"{err.get('Code', 'error')}: {err.get('Message', '')}".strip()
            raise self._failed(role, key, self._scrub(detail)) from None
        except BotoCoreError as exc:
            raise self._failed(role, key, self._scrub(str(exc))) from None
        return url, expires_at

    def _scrub(self, detail: str) -> str:
        """The storage host's words, fit to show: an endpoint (or a proxy in front of it) may echo the request,
        whose headers carry the session token and the signature; the secret key is taken out too."""
        secrets: list[str] = []
        try:
            creds = self._session.get_credentials() if self._session is not None else None
            frozen = creds.get_frozen_credentials() if creds is not None else None
        except Exception:       # noqa: BLE001 - a credential provider failing here must not hide the upload error
            frozen = None
        if frozen is not None:
            secrets += [v for v in (frozen.secret_key, frozen.token) if v]
        text = Redactor(secrets).text(detail)
        text = _SIGNATURE.sub(lambda m: m.group(1) + "***", text)
        return clip(text)

    def _failed(self, role: str, key: str, detail: str) -> ConfigError:
        where = f" at {self.settings.endpoint_url}" if self.settings.endpoint_url else ""
        return ConfigError(f"Uploading the {{role}} to s3://{self.settings.bucket}/{key}{where} failed ({detail}). "
                           f"Nothing was submitted. Check {ENV['bucket']}, {ENV['endpoint_url']} and "
                           f"{ENV['region']}; {CREDENTIALS_HINT}.", role=role)
