"""Helpers shared by the simulated hosts: reading bodies, checking media like the hosts do."""
from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..core import JobSpec, SimCore

RATIOS_10 = ("16:9", "9:16", "1:1", "4:3", "3:4")
RATIOS_11 = RATIOS_10 + ("21:9", "9:21", "5:4", "4:5")


class HostError(Exception):
    """A refusal in the host's own shape; the protocol module turns it into its error body."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        super().__init__(message)


async def read_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw.decode("utf-8", "replace")


async def accept_submit(
    sim: SimCore, name: str, request: web.Request, *,
    auth: Callable[[web.Request], web.Response | None],
    parse: Callable[[SimCore, Any], Awaitable[JobSpec]],
    on_error: Callable[[Any], web.Response],
    catch: type[Exception] = HostError,
    check: Callable[[web.Request, Any], web.Response | None] | None = None,
) -> tuple[JobSpec | None, web.Response | None]:
    """The submit preamble every simulated host shares: read and log the body, check the key, run the host's own
    checks, parse the body into a JobSpec. Returns (spec, None), or (None, the refusal in the host's own shape):
    `auth` and `check` answer a refusal or None, `on_error` turns a caught `catch` from `parse` into one."""
    body = await read_json(request)
    sim.record_request(name, "POST", request.path, dict(request.headers), body)
    if (refusal := auth(request)) is not None:
        return None, refusal
    if check is not None and (refusal := check(request, body)) is not None:
        return None, refusal
    try:
        return await parse(sim, body), None
    except catch as e:
        return None, on_error(e)


def bearer_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer ") and auth[7:].strip():
        return auth[7:].strip()
    return None


def key_problem(key: str | None) -> str | None:
    """Simulated accounts: any key works except ones that name a problem (for tests and demos)."""
    if not key:
        return "missing"
    if "invalid" in key:
        return "invalid"
    if "nocredit" in key or "arrears" in key:
        return "credits"
    return None


def check_image(data: bytes, field: str, min_side: int, max_bytes: int = 20 << 20) -> None:
    from PIL import Image, UnidentifiedImageError

    if len(data) > max_bytes:
        raise HostError(400, "InvalidParameter", f"{field}: image larger than {max_bytes >> 20} MB")
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h, fmt = im.width, im.height, im.format
    except (UnidentifiedImageError, OSError):
        raise HostError(400, "InvalidParameter", f"{field}: not a readable image") from None
    if fmt not in ("JPEG", "PNG", "WEBP", "BMP"):
        raise HostError(400, "InvalidParameter", f"{field}: format {fmt} not supported")
    if min(w, h) < min_side:
        raise HostError(400, "InvalidParameter", f"{field}: image {w}x{h} is smaller than {min_side} px")
    if max(w, h) / min(w, h) > 2.5:
        raise HostError(400, "InvalidParameter", f"{field}: aspect ratio out of range 1:2.5..2.5:1")


def check_video(data: bytes, field: str) -> float:
    from ...engine.media import MediaError, probe_video_bytes

    try:
        info = probe_video_bytes(data)
    except MediaError:
        raise HostError(400, "InvalidParameter", f"{field}: not a readable video") from None
    dur, w, h = info.duration_s, info.width, info.height
    if not 3 <= dur <= 60.5:
        raise HostError(400, "InvalidParameter", f"{field}: video duration {dur:.1f}s out of range 3-60s")
    if min(w, h) < 320 or max(w, h) > 2160:
        raise HostError(400, "InvalidParameter", f"{field}: video size {w}x{h} out of range")
    if max(w, h) / min(w, h) > 2.5:
        raise HostError(400, "InvalidParameter", f"{field}: video aspect ratio out of range 1:2.5..2.5:1")
    return dur


def int_param(value: Any, field: str, lo: int, hi: int, *, allow_str: bool = False) -> int:
    if isinstance(value, str) and allow_str and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise HostError(400, "InvalidParameter", f"{field} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def video_url(request: web.Request, sim: SimCore, job_id: str) -> str:
    return f"{request.scheme}://{request.host}/files/{job_id}.mp4"
