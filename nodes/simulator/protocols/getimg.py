"""Simulated getimg.ai: /getimg/v2/videos/generations as providers.md section 2 and getimg's OpenAPI describe.

Submit answers HTTP 202 {"id": "req-...", "status": "pending"}; poll answers pending | completed | failed.
Errors are {"error": {"message", "type", "param", "code"}}; every reply carries X-RateLimit-* headers, and a
429 adds Retry-After. Media must be public http(s) URLs: data: URIs get a 400, as getimg documents.
Fields outside the request schema (model, prompt, images, aspect_ratio, resolution, duration, sound) are refused,
so a client that sends e.g. `seed` finds out here rather than having it silently ignored.
Guesses where getimg is silent, kept in step with providers/getimg.py: a workspace without credits gets
402 insufficient_credits; an unknown id gets 404; first_frame and reference_image roles are not mixed.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from aiohttp import web

from ..core import JobSpec, SimCore, SimMediaError
from .common import RATIOS_10, HostError, accept_submit, bearer_key, check_image, int_param, key_problem, video_url

PREFIX = "/getimg"
MODEL = "happyhorse-1"
FIELDS = {"model", "prompt", "images", "aspect_ratio", "resolution", "duration", "sound"}
MAX_IMAGES = 8                          # the schema's maxItems
UNIT_PRICE = {"720p": 0.14, "1080p": 0.24}   # getimg's published USD per second
RATE_LIMIT = 60                         # requests per window shown in X-RateLimit-Limit
RESULT_LIFETIME_S = 24 * 3600

ERROR_TYPES = {400: ("invalid_request_error", "invalid_parameter"), 401: ("authentication_error", "invalid_api_key"),
               402: ("billing_error", "insufficient_credits"), 404: ("not_found_error", "not_found"),
               429: ("rate_limit_error", "rate_limit")}

# Where the submit reply keeps the task id and the poll reply the status word (for injected quirks).
SUBMIT_ID = ("id",)
STATUS_WORD = ("status",)


def stage_of(method: str, path: str) -> str | None:
    if method == "POST" and path.endswith("/v2/videos/generations"):
        return "submit"
    if method == "GET" and "/v2/videos/generations/" in path:
        return "poll"
    return None


def _rate_headers(retry_after: float | None = None) -> dict[str, str]:
    reset = time.time() + (retry_after if retry_after is not None else 60)
    return {"X-RateLimit-Limit": str(RATE_LIMIT), "X-RateLimit-Remaining": "0" if retry_after is not None
            else str(RATE_LIMIT - 1), "X-RateLimit-Reset": str(int(reset))}


def error_response(status: int, message: str, headers: dict | None = None) -> web.Response:
    """getimg's error body; a 429 carries Retry-After and the X-RateLimit-* headers, as getimg documents."""
    headers = dict(headers or {})
    if status == 429:
        headers.setdefault("Retry-After", "1")
        headers.update(_rate_headers(float(headers["Retry-After"])))
    return _error(status, ERROR_TYPES.get(status, ("api_error", "internal_error"))[1], message, headers=headers)


def _error(status: int, code: str, message: str, param: str | None = None,
           headers: dict | None = None) -> web.Response:
    err_type = ERROR_TYPES.get(status, ("api_error", ""))[0]
    return web.json_response({"error": {"message": message, "type": err_type, "param": param, "code": code}},
                             status=status, headers={**_rate_headers(), **(headers or {})})


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def routes(sim: SimCore) -> web.RouteTableDef:
    r = web.RouteTableDef()
    name = "getimg"

    def auth(request: web.Request) -> web.Response | None:
        problem = key_problem(bearer_key(request))
        if problem in ("missing", "invalid"):
            return _error(401, "invalid_api_key", "Invalid API key provided.")
        if problem == "credits":
            return _error(402, "insufficient_credits", "Your workspace does not have enough credits.")
        return None

    @r.post(PREFIX + "/v2/videos/generations")
    async def submit(request: web.Request) -> web.Response:
        spec, refusal = await accept_submit(sim, name, request, auth=auth, parse=_parse_submit, catch=ParamError,
                                            on_error=lambda e: _error(e.status, e.code, e.message, param=e.param))
        if refusal is not None:
            return refusal
        job = sim.create_job(spec)
        return web.json_response({"id": f"req-{job.id}", "status": "pending"}, status=202, headers=_rate_headers())

    @r.get(PREFIX + "/v2/videos/generations/{gen_id}")
    async def poll(request: web.Request) -> web.Response:
        sim.record_request(name, "GET", request.path, dict(request.headers), None)
        if (resp := auth(request)) is not None:
            return resp
        gen_id = request.match_info["gen_id"]
        view = sim.view(gen_id.removeprefix("req-")) if gen_id.startswith("req-") else None
        if view is None:
            return _error(404, "not_found", f"Generation {gen_id} not found.", param="id")
        job = view.job
        body: dict = {"id": gen_id, "status": "pending", "model": job.spec.model}
        if view.state == "succeeded":
            res = job.spec.resolution
            body.update(status="completed", data=[{
                "url": video_url(request, sim, job.id), "width": job.width, "height": job.height,
                "duration": job.out_seconds, "fps": 24, "has_sound": True, "mime_type": "video/mp4",
                "deletes_at": _iso((job.finished_at or time.time()) + RESULT_LIFETIME_S)}],
                usage={"total_cost": round(UNIT_PRICE[res] * job.out_seconds, 4), "billable_unit": "video_second",
                       "unit_price": UNIT_PRICE[res], "quantity": job.out_seconds})
        elif view.state == "failed":
            body.update(status="failed", error={"code": "generation_failed", "message": view.error})
        return web.json_response(body, headers=_rate_headers())

    return r


class ParamError(HostError):
    """A 400 naming the offending parameter, as getimg's `error.param` does."""

    def __init__(self, message: str, param: str, code: str = "invalid_parameter"):
        super().__init__(400, code, message)
        self.param = param


async def _parse_submit(sim: SimCore, body) -> JobSpec:
    if not isinstance(body, dict):
        raise ParamError("Request body must be a JSON object.", "body")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise ParamError(f"Unrecognized request argument supplied: {unknown[0]}", unknown[0])
    if body.get("model") != MODEL:
        raise ParamError(f"Model {body.get('model')!r} is not available for video generation.", "model",
                         code="invalid_model")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not 1 <= len(prompt) <= 4096:
        raise ParamError("prompt must be a string of 1 to 4096 characters.", "prompt")
    resolution = body.get("resolution", "1080p")
    if resolution not in ("720p", "1080p"):
        raise ParamError(f"resolution {resolution!r} is not supported by {MODEL}; use 720p or 1080p.", "resolution")
    ratio = body.get("aspect_ratio", "16:9")
    if ratio not in RATIOS_10:
        raise ParamError(f"aspect_ratio {ratio!r} is not supported by {MODEL}; use one of {', '.join(RATIOS_10)}.",
                   "aspect_ratio")
    try:
        duration = int_param(body.get("duration", 5), "duration", 3, 15)
    except HostError as e:
        raise ParamError(e.message, "duration") from None

    images = body.get("images", [])
    if not isinstance(images, list) or len(images) > MAX_IMAGES:
        raise ParamError(f"images must be an array of at most {MAX_IMAGES} items.", "images")
    roles = [im.get("role") if isinstance(im, dict) else None for im in images]
    if any(role not in ("first_frame", "reference_image") for role in roles):
        raise ParamError("images[].role must be first_frame or reference_image.", "images")
    if roles.count("first_frame") > 1 or ("first_frame" in roles and "reference_image" in roles):
        raise ParamError(f"{MODEL} takes either one first_frame image or reference_image images, not both.", "images")
    mode = "i2v" if "first_frame" in roles else "r2v" if roles else "t2v"

    spec = JobSpec(provider="getimg", mode=mode, version="1.0", prompt=prompt, resolution=resolution,
                   aspect_ratio=ratio if mode != "i2v" else None, duration_s=duration, model=MODEL)
    for i, (im, role) in enumerate(zip(images, roles)):
        try:
            data = await sim.fetch_media(str(im.get("url", "")), allow_data_uri=False)
            check_image(data, f"images[{i}]", 300 if role == "first_frame" else 400)
        except SimMediaError as exc:
            raise ParamError(f"images[{i}].url: {exc}", f"images[{i}].url") from None
        except HostError as exc:
            raise ParamError(exc.message, f"images[{i}]") from None
        if role == "first_frame":
            spec.first_frame = data
        else:
            spec.reference_images.append(data)
    return spec
