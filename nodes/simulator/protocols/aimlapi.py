"""Simulated AI/ML API: /aimlapi/v2/video/generations, as its OpenAPI schema [S3] describes it.

POST takes the generation request (mode implied by the media fields) and answers the generation object;
GET ?generation_id= answers the same object with status queued | generating | completed | error.
Errors are `{message, path, requestId, statusCode, timestamp}`, and a 429 carries no Retry-After.

Behaviour the docs leave open, chosen here (one place each):
- 401 for a missing or bad key, 403 for no credits, 404 for an unknown generation_id, 400 for everything the
  schema forbids (including two media modes in one request).
- `duration` is accepted as an integer or a numeric string (the docs' examples send "7"), and is ignored when a
  video is given, as documented.
- The finished object carries `meta.usage` with only `credits_used` (the GET schema's one field), as a STRING
  (the host's habit of sending numbers as strings), at the published 2,000,000 credits per USD; the USD amount
  behind it is a stand-in rate, not AI/ML API's price.
- `prompt` must be a non-empty string in every mode (the schema requires it).
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from aiohttp import web

from ..core import JobSpec, SimCore, SimMediaError
from .common import (RATIOS_10, HostError, accept_submit, bearer_key, check_image, check_video, int_param, key_problem,
                     video_url)

PREFIX = "/aimlapi"
PATH = "/v2/video/generations"
MODEL = "alibaba/happyhorse-1-0"
STATUS = {"queued": "queued", "running": "generating", "succeeded": "completed", "failed": "error"}
# Simulator stand-in charge (DashScope's 1.0 list price), so usd_spent has something to report.
STAND_IN_USD_PER_S = {"720p": 0.14, "1080p": 0.24}
CREDITS_PER_USD = 2_000_000         # AI/ML API's published conversion (docs.aimlapi.com FAQ)
SEED_MAX = 2147483647

# Where the submit reply keeps the task id and the poll reply the status word (for injected quirks).
SUBMIT_ID = ("id",)
STATUS_WORD = ("status",)


def stage_of(method: str, path: str) -> str | None:
    if path == PREFIX + PATH:
        return {"POST": "submit", "GET": "poll"}.get(method)
    return None


def error_response(status: int, message: str, headers: dict | None = None) -> web.Response:
    """AI/ML API's error body. Its 429 carries no Retry-After or rate-limit headers, so none are sent."""
    return _error(status, message, PATH)


def _error(status: int, message: str | list[str], path: str) -> web.Response:
    return web.json_response({"message": message, "path": path, "requestId": str(uuid.uuid4()),
                              "statusCode": status,
                              "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds")},
                             status=status)


def routes(sim: SimCore) -> web.RouteTableDef:
    r = web.RouteTableDef()
    name = "aimlapi"

    def auth(request: web.Request) -> web.Response | None:
        problem = key_problem(bearer_key(request))
        if problem in ("missing", "invalid"):
            return _error(401, "Invalid or missing API key", PATH)
        if problem == "credits":
            return _error(403, "Insufficient credits: your balance is too low for this request", PATH)
        return None

    @r.post(PREFIX + PATH)
    async def submit(request: web.Request) -> web.Response:
        spec, refusal = await accept_submit(sim, name, request, auth=auth, parse=_parse_submit,
                                            on_error=lambda e: _error(e.status, e.message, PATH))
        if refusal is not None:
            return refusal
        job = sim.create_job(spec)
        return web.json_response({"id": job.id, "status": "queued"})

    @r.get(PREFIX + PATH)
    async def poll(request: web.Request) -> web.Response:
        # path_qs: the generation id travels in the query string, and tests check exactly that.
        sim.record_request(name, "GET", request.path_qs, dict(request.headers), None)
        if (resp := auth(request)) is not None:
            return resp
        gen_id = request.query.get("generation_id", "")
        if not gen_id:
            return _error(400, ["generation_id should not be empty"], PATH)
        view = sim.view(gen_id)
        if view is None:
            return _error(404, f"Generation {gen_id} not found", PATH)
        job = view.job
        out: dict = {"id": job.id, "status": STATUS[view.state], "video": None, "error": None, "meta": None}
        if view.state == "succeeded":
            usd = round(job.out_seconds * STAND_IN_USD_PER_S[job.spec.resolution], 4)
            out["video"] = {"url": video_url(request, sim, job.id)}
            out["meta"] = {"usage": {"credits_used": str(round(usd * CREDITS_PER_USD))}}
        elif view.state == "failed":
            out["error"] = {"name": "GenerationError", "message": view.error}
        return web.json_response(out)

    return r


def _opt_str(body: dict, field: str) -> str | None:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise HostError(400, "", f"{field} must be a string")
    return value


async def _parse_submit(sim: SimCore, body) -> JobSpec:
    if not isinstance(body, dict):
        raise HostError(400, "", "request body must be a JSON object")
    if body.get("model") != MODEL:
        raise HostError(400, "", f"model must be one of the following values: {MODEL}")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise HostError(400, "", "prompt should not be empty")
    image = _opt_str(body, "image_url")
    video = _opt_str(body, "video_url")
    refs = body.get("reference_image_urls")
    if refs is not None and (not isinstance(refs, list) or not all(isinstance(u, str) for u in refs)):
        raise HostError(400, "", "reference_image_urls must be an array of strings")
    refs = refs or []
    if len(refs) > 9:
        raise HostError(400, "", "reference_image_urls must contain no more than 9 elements")
    if video is not None:
        mode = "edit"
        if image is not None:
            raise HostError(400, "", "image_url cannot be combined with video_url")
        if len(refs) > 5:
            raise HostError(400, "", "a video edit takes at most 5 reference images")
    elif image is not None:
        mode = "i2v"
        if refs:
            raise HostError(400, "", "image_url cannot be combined with reference_image_urls")
    else:
        mode = "r2v" if refs else "t2v"

    ratio = body.get("aspect_ratio", "16:9")
    if ratio not in RATIOS_10:
        raise HostError(400, "", f"aspect_ratio must be one of the following values: {', '.join(RATIOS_10)}")
    resolution = body.get("resolution", "1080p")
    if resolution not in ("720p", "1080p"):
        raise HostError(400, "", "resolution must be one of the following values: 720p, 1080p")
    duration = int_param(body.get("duration", 10), "duration", 3, 15, allow_str=True)
    audio = body.get("audio_setting", "auto")
    if audio not in ("auto", "origin"):
        raise HostError(400, "", "audio_setting must be one of the following values: auto, origin")
    seed = int_param(body.get("seed", 0), "seed", 0, SEED_MAX)
    watermark = body.get("watermark", False)
    if not isinstance(watermark, bool):
        raise HostError(400, "", "watermark must be a boolean value")

    spec = JobSpec(provider="aimlapi", mode=mode, version="1.0", prompt=prompt, resolution=resolution,
                   aspect_ratio=ratio if mode in ("t2v", "r2v") else None, duration_s=duration, seed=seed,
                   watermark=watermark, audio_setting=audio, model=MODEL)
    if image is not None:
        spec.first_frame = await _fetch(sim, _as_data_uri(image), "image_url")
        check_image(spec.first_frame, "image_url", 300)
    for i, url in enumerate(refs):
        data = await _fetch(sim, url, f"reference_image_urls[{i}]")
        # Edit references follow the video-edit limits (300 px, 10 MB), r2v references 400 px.
        check_image(data, f"reference_image_urls[{i}]", *((300, 10 << 20) if mode == "edit" else (400, 20 << 20)))
        spec.reference_images.append(data)
    if video is not None:
        spec.source_video = await _fetch(sim, video, "video_url")
        check_video(spec.source_video, "video_url")
    return spec


def _as_data_uri(value: str) -> str:
    """image_url may be a link or bare Base64 of a local image (as the schema says)."""
    if value.startswith(("http://", "https://", "data:")):
        return value
    return f"data:application/octet-stream;base64,{value}"


async def _fetch(sim: SimCore, url: str, field: str) -> bytes:
    try:
        return await sim.fetch_media(url, allow_data_uri=True)
    except SimMediaError as exc:
        raise HostError(400, "", f"{field}: {exc}") from None
