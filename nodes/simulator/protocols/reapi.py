"""Simulated reAPI: /reapi/api/v1/videos/generations and /reapi/api/v1/tasks/{id}, as [S4] and reAPI's pages describe.

1.1 (`happyhorse-1-1`): `image_urls` = [first frame] (exactly one) -> i2v, `reference_image_urls` (1-9) -> r2v,
both together -> 400 / 20002; resolution 720p | 1080p (default 720p); ratio `aspect_ratio`. Over-long 1.1 prompts
are truncated (5000 / 2500 CJK), not refused. 1.0 (`happyhorse-1.0`, reAPI's 1.0 model page): routing by
`video_url` > `first_frame_image` > `image_urls` (= references; 0-5 with a video), the first two exclusive with
the others; resolution 720P | 1080P (default 1080P), `watermark` (default off), `seed`; the ratio is `size`
("16:9", ignored in i2v and edit) and `aspect_ratio` is refused; the prompt is at most 2500 characters (refused
beyond). Media must be public http(s) URLs: data: URIs -> 400 / 20002. Errors are
`{"error": {code, message, request_id}}` (auth: 10001 no header, 10002 not Bearer, 10003 bad key); a task is
`{id, model, status: processing | completed | failed, created_at, output: {video_urls}, error}`, and a failed
task's `error` is that same envelope.

Behaviour the docs leave open, chosen here (one place each):
- An unknown task id is 404 with NOT_FOUND_CODE; server errors use SERVER_ERROR_CODE; failed tasks
  FAILED_JOB_CODE.
- A field of the other version (e.g. `video_url` on 1.1, `reference_image_urls` on 1.0) is refused, as is a
  `duration` sent as a string: the API types it as an integer.
"""
from __future__ import annotations

import io
import uuid

from aiohttp import web

from ..core import JobSpec, SimCore, SimMediaError
from .common import (RATIOS_10, RATIOS_11, HostError, accept_submit, bearer_key, check_image, check_video, int_param,
                     key_problem, video_url)

PREFIX = "/reapi"
SUBMIT_PATH = "/api/v1/videos/generations"
TASKS_PATH = "/api/v1/tasks/"
TASK_PREFIX = "task_"
MODELS = {"happyhorse-1-1": "1.1", "happyhorse-1.0": "1.0"}
FIELDS = {"1.1": ("image_urls", "reference_image_urls", "aspect_ratio"),
          "1.0": ("first_frame_image", "image_urls", "video_url", "audio_setting", "watermark", "seed", "size")}
RATIO_FIELD = {"1.1": "aspect_ratio", "1.0": "size"}
RESOLUTIONS = {"1.1": ("720p", "1080p"), "1.0": ("720P", "1080P")}
DEFAULT_RESOLUTION = {"1.1": "720p", "1.0": "1080P"}
STATUS = {"queued": "processing", "running": "processing", "succeeded": "completed", "failed": "failed"}
PROMPT_LIMIT = 5000                 # 1.1: non-CJK characters; CJK count double (2500); truncated beyond
PROMPT_LIMIT_10 = 2500              # 1.0: "<= 2500 chars"; refused beyond
NOT_FOUND_CODE = 20004
SERVER_ERROR_CODE = 90001
FAILED_JOB_CODE = 60001
SEED_MAX = 2147483647
CODES = {400: 20002, 401: 10003, 402: 30001, 404: NOT_FOUND_CODE, 429: 50001}

# Where the submit reply keeps the task id and the poll reply the status word (for injected quirks).
SUBMIT_ID = ("id",)
STATUS_WORD = ("status",)


def stage_of(method: str, path: str) -> str | None:
    if method == "POST" and path == PREFIX + SUBMIT_PATH:
        return "submit"
    if method == "GET" and path.startswith(PREFIX + TASKS_PATH):
        return "poll"
    return None


def error_response(status: int, message: str, headers: dict | None = None) -> web.Response:
    """reAPI's error body; headers (e.g. an injected Retry-After) are passed on, none are invented."""
    return _error(status, CODES.get(status, SERVER_ERROR_CODE), message, headers)


def _envelope(code: int, message: str) -> dict:
    return {"code": code, "message": message, "request_id": f"req_{uuid.uuid4()}"}


def _error(status: int, code: int, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"error": _envelope(code, message)}, status=status, headers=headers)


def routes(sim: SimCore) -> web.RouteTableDef:
    r = web.RouteTableDef()
    name = "reapi"

    def auth(request: web.Request) -> web.Response | None:
        if "Authorization" not in request.headers:
            return _error(401, 10001, "Missing Authorization header")
        problem = key_problem(bearer_key(request))
        if problem == "missing":
            return _error(401, 10002, "Authorization header is not Bearer <key>")
        if problem == "invalid":
            return _error(401, 10003, "API key invalid")
        if problem == "credits":
            return _error(402, 30001, "Insufficient credits")
        return None

    @r.post(PREFIX + SUBMIT_PATH)
    async def submit(request: web.Request) -> web.Response:
        spec, refusal = await accept_submit(
            sim, name, request, auth=auth, parse=_parse_submit,
            on_error=lambda e: _error(e.status, CODES.get(e.status, SERVER_ERROR_CODE), e.message))
        if refusal is not None:
            return refusal
        job = sim.create_job(spec)
        return web.json_response(_task(TASK_PREFIX + job.id, spec.model, "processing", job.created_wall))

    @r.get(PREFIX + TASKS_PATH + "{task_id}")
    async def poll(request: web.Request) -> web.Response:
        sim.record_request(name, "GET", request.path, dict(request.headers), None)
        if (resp := auth(request)) is not None:
            return resp
        task_id = request.match_info["task_id"]
        view = sim.view(task_id[len(TASK_PREFIX):]) if task_id.startswith(TASK_PREFIX) else None
        if view is None:
            return _error(404, NOT_FOUND_CODE, f"task {task_id} not found")
        task = _task(task_id, view.job.spec.model, STATUS[view.state], view.job.created_wall)
        if view.state == "succeeded":
            task["output"] = {"video_urls": [video_url(request, sim, view.job.id)]}
        elif view.state == "failed":
            task["error"] = _envelope(FAILED_JOB_CODE, view.error)
        return web.json_response(task)

    return r


def _task(task_id: str, model: str, status: str, created: float) -> dict:
    return {"id": task_id, "model": model, "status": status, "created_at": int(created), "output": None,
            "error": None}


def _bad(message: str) -> HostError:
    return HostError(400, "", message)


def _url_list(body: dict, field: str, lo: int, hi: int) -> list[str]:
    urls = body.get(field)
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls) or not lo <= len(urls) <= hi:
        raise _bad(f"{field} must be an array of {lo}-{hi} URL strings" if lo != hi
                   else f"{field} must hold exactly {lo} URL")
    return urls


def _truncate(prompt: str) -> str:
    weight = 0
    for i, ch in enumerate(prompt):
        weight += 2 if ord(ch) > 0x2E7F else 1
        if weight > PROMPT_LIMIT:
            return prompt[:i]
    return prompt


async def _parse_submit(sim: SimCore, body) -> JobSpec:
    if not isinstance(body, dict):
        raise _bad("request body must be a JSON object")
    model = body.get("model")
    if model not in MODELS:
        raise _bad(f"model must be one of {', '.join(MODELS)}")
    version = MODELS[model]
    foreign = sorted(f for other, fields in FIELDS.items() if other != version for f in fields
                     if f in body and f not in FIELDS[version])
    if foreign:
        raise _bad(f"{model} does not take {', '.join(foreign)}")
    if version == "1.1":
        mode, first, refs, video = _media_11(body)
    else:
        mode, first, refs, video = _media_10(body)

    prompt = body.get("prompt", "")
    if not isinstance(prompt, str) or (mode != "i2v" and not prompt.strip()):
        raise _bad(f"prompt is required for {mode.upper()}")
    if version == "1.0" and len(prompt) > PROMPT_LIMIT_10:
        raise _bad(f"prompt must be at most {PROMPT_LIMIT_10} characters for {model}")
    resolution = body.get("resolution", DEFAULT_RESOLUTION[version])
    if resolution not in RESOLUTIONS[version]:
        raise _bad(f"resolution must be {' or '.join(RESOLUTIONS[version])}")
    ratios = RATIOS_11 if version == "1.1" else RATIOS_10
    ratio_field = RATIO_FIELD[version]
    ratio = body.get(ratio_field, "16:9")
    if ratio not in ratios:
        raise _bad(f"{ratio_field} must be one of {' '.join(ratios)}")
    try:
        duration = int_param(body.get("duration", 5), "duration", 3, 15)
        seed = int_param(body.get("seed", 0), "seed", 0, SEED_MAX)
    except HostError as e:
        raise _bad(e.message) from None
    audio = body.get("audio_setting", "auto")
    if audio not in ("auto", "origin"):
        raise _bad("audio_setting must be auto or origin")
    watermark = body.get("watermark", False)
    if not isinstance(watermark, bool):
        raise _bad("watermark must be a boolean")
    for url in [*([first] if first else []), *refs, *([video] if video else [])]:
        if not url.startswith(("http://", "https://")):
            raise _bad("All media inputs must be public HTTP(S) URLs; base64 / data: URIs are rejected")

    spec = JobSpec(provider="reapi", mode=mode, version=version,
                   prompt=_truncate(prompt) if version == "1.1" else prompt,
                   resolution=resolution.lower(), aspect_ratio=ratio if mode in ("t2v", "r2v") else None,
                   duration_s=duration, seed=seed, watermark=watermark, audio_setting=audio, model=model)
    if first is not None:
        spec.first_frame = await _fetch_image(sim, first, "first frame", 300)
    for i, url in enumerate(refs):     # edit references follow the video-edit limits (300 px, 10 MB)
        spec.reference_images.append(await _fetch_image(sim, url, f"reference image {i + 1}",
                                                        *((300, 10 << 20) if mode == "edit" else (400, 20 << 20))))
    if video is not None:
        spec.source_video = await _fetch(sim, video, "video_url")
        check_video(spec.source_video, "video_url")
    return spec


def _media_11(body: dict) -> tuple[str, str | None, list[str], None]:
    if "image_urls" in body and "reference_image_urls" in body:
        raise _bad("image_urls (I2V) and reference_image_urls (R2V) are mutually exclusive")
    if "image_urls" in body:
        return "i2v", _url_list(body, "image_urls", 1, 1)[0], [], None
    if "reference_image_urls" in body:
        return "r2v", None, _url_list(body, "reference_image_urls", 1, 9), None
    return "t2v", None, [], None


def _media_10(body: dict) -> tuple[str, str | None, list[str], str | None]:
    first, video = body.get("first_frame_image"), body.get("video_url")
    for field, value in (("first_frame_image", first), ("video_url", video)):
        if value is not None and not isinstance(value, str):
            raise _bad(f"{field} must be a URL string")
    if video is not None:
        if first is not None:
            raise _bad("first_frame_image cannot be combined with video_url")
        refs = _url_list(body, "image_urls", 0, 5) if "image_urls" in body else []
        return "edit", None, refs, video
    if first is not None:
        if "image_urls" in body:
            raise _bad("first_frame_image (I2V) and image_urls (R2V) are mutually exclusive")
        return "i2v", first, [], None
    if "image_urls" in body:
        return "r2v", None, _url_list(body, "image_urls", 1, 9), None
    return "t2v", None, [], None


async def _fetch(sim: SimCore, url: str, what: str) -> bytes:
    try:
        return await sim.fetch_media(url, allow_data_uri=False)
    except SimMediaError as exc:
        raise _bad(f"{what}: {exc}") from None


async def _fetch_image(sim: SimCore, url: str, what: str, min_side: int, max_bytes: int = 20 << 20) -> bytes:
    from PIL import Image

    data = await _fetch(sim, url, what)
    check_image(data, what, min_side, max_bytes)
    with Image.open(io.BytesIO(data)) as im:
        if im.format not in ("JPEG", "PNG", "WEBP"):     # reAPI takes no BMP, unlike DashScope
            raise _bad(f"{what}: {im.format} is not accepted; use JPEG, PNG or WEBP")
    return data
