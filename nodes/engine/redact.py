"""Keep secrets out of everything shown, logged or stored: URLs and the text hosts send back.

A host may echo the request it received (headers included) in an error body, so every reply is scrubbed by
the transport as it arrives, before any adapter, error message, log line or ledger column sees it. Userinfo
(`user:password@`) and query strings (signed URLs) are dropped from URLs that are shown or stored.
"""
from __future__ import annotations

import re
from typing import Any, Iterable
from urllib.parse import urlsplit

HIDDEN = "***"
# Longest host-provided text an error message carries; the rest is cut (a host can send megabytes).
SHOWN_MAX_CHARS = 400

# "Authorization: Bearer x", "x-api-key=x", '"Authorization": "Key x"' ... : the value goes, the name stays.
_HEADER_VALUE = re.compile(
    r"""(?ix)
    (\b(?:proxy-)?authorization|\bx-api-key|\bapi[-_]?key|\bx-goog-api-key)   # a credential's name
    (["']?\s*[:=]\s*["']?)                                                   # : or = , maybe quoted
    (?:(?:bearer|basic|token|key)\s+)?                                       # an auth scheme
    [^\s"',;})\]]+                                                           # the value
    """)
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=:-]{6,}")


def redact_url(url: str) -> str:
    """A URL fit to show or store: no `user:password@`, no query string (signed URLs carry credentials)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" + ("?..." if parts.query else "")


class Redactor:
    """Replaces the given secrets, and any credential header value, with ***."""

    def __init__(self, secrets: Iterable[str] = ()):
        tokens: set[str] = set()
        for secret in secrets:
            secret = secret.strip()
            if secret:
                tokens.add(secret)
                # "Bearer sk-..." is sent; a host may echo only the "sk-..." part.
                tokens.update(part for part in secret.split() if len(part) >= 8)
        self._tokens = sorted(tokens, key=len, reverse=True)

    def text(self, text: str) -> str:
        for token in self._tokens:
            text = text.replace(token, HIDDEN)
        text = _HEADER_VALUE.sub(lambda m: m.group(1) + m.group(2) + HIDDEN, text)
        return _BEARER.sub(lambda m: m.group(1) + " " + HIDDEN, text)

    def value(self, value: Any) -> Any:
        """text() applied to every string (keys too) inside parsed JSON."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value


def clip(text: str, limit: int = SHOWN_MAX_CHARS) -> str:
    """At most `limit` characters of host-provided text, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def clip_value(value: Any, limit: int = SHOWN_MAX_CHARS) -> Any:
    """clip() applied to every string inside parsed JSON."""
    if isinstance(value, str):
        return clip(value, limit)
    if isinstance(value, dict):
        return {k: clip_value(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [clip_value(v, limit) for v in value]
    return value
