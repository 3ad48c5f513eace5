"""Simulated APIXO: /apixo stands for https://api.apixo.ai/api/v1 (providers.md section 3, APIXO's docs).

POST /apixo/generateTask/happyHorse and GET /apixo/statusTask/happyHorse?taskId=... Every reply is the
envelope {"code", "message", "data"}. Refusals listed in APIXO's HTTP status table (400 bad request,
401 key, 404 task, 429 rate limit, 5xx) come with that HTTP status and the same envelope code; a bad parameter
says what is wrong in data.error. The one refusal APIXO documents only as a body, {"code": 400, "message":
"Insufficient credits"}, is sent inside an HTTP 200 reply, the quirk clients must handle; injected faults can
put a 429 or 5xx there too (`"http_status": 200`, see server.fault_middleware).
Task states pending | processing | success | failed; success carries `resultJson`, a JSON string, and
costTime in ms; failure carries failCode / failMsg. Media must be URLs (data: URIs are refused).
Guesses kept in step with providers/apixo.py: the media fields `image_urls` / `video_url`; fields outside the
documented `input` set are refused, as are ratio / duration / audio_setting in modes they do not apply to.
"""
from __future__ import annotations

import json
import time
import uuid

from aiohttp import web

from ..core import JobSpec, SimCore, SimMediaError
from .common import (RATIOS_10, HostError, accept_submit, bearer_key, check_image, check_video, int_param, key_problem,
                     video_url)

PREFIX = "/apixo"
MODES = {"text-to-video": "t2v", "image-to-video": "i2v", "reference-to-video": "r2v", "video-edit": "edit"}
IMAGE_FIELD = "image_urls"
VIDEO_FIELD = "video_url"
INPUT_FIELDS = {"mode", "prompt", "resolution", "ratio", "duration", "watermark", "seed", "audio_setting",
                IMAGE_FIELD, VIDEO_FIELD}
IMAGE_COUNTS = {"t2v": (0, 0), "i2v": (1, 1), "r2v": (1, 9), "edit": (0, 5)}

# Where the submit reply keeps the task id and the poll reply the status word (for injected quirks).
SUBMIT_ID = ("data", "taskId")
STATUS_WORD = ("data", "state")


def stage_of(method: str, path: str) -> str | None:
    if method == "POST" and "/generateTask/" in path:
        return "submit"
    if method == "GET" and "/statusTask/" in path:
        return "poll"
    return None


def error_response(status: int, message: str, headers: dict | None = None) -> web.Response:
    """APIXO's envelope with the HTTP status repeated as `code` (APIXO documents no rate-limit headers)."""
    return _envelope(status, message, None, status=status, headers=headers)


def _envelope(code: int, message: str, data, *, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.json_response({"code": code, "message": message, "data": data}, status=status, headers=headers)


def _bad_request(detail: str) -> web.Response:
    return _envelope(400, "Invalid request", {"error": detail}, status=400)


def routes(sim: SimCore) -> web.RouteTableDef:
    r = web.RouteTableDef()
    name = "apixo"

    def auth(request: web.Request) -> web.Response | None:
        problem = key_problem(bearer_key(request))
        if problem in ("missing", "invalid"):
            return _envelope(401, "Unauthorized: invalid API key", None, status=401)
        if problem == "credits":
            return _envelope(400, "Insufficient credits", None)     # HTTP 200: the code is only in the body
        return None

    @r.post(PREFIX + "/generateTask/happyHorse")
    async def submit(request: web.Request) -> web.Response:
        spec, refusal = await accept_submit(sim, name, request, auth=auth, parse=_parse_submit,
                                            on_error=lambda e: _bad_request(e.message))
        if refusal is not None:
            return refusal
        job = sim.create_job(spec)
        return _envelope(200, "success", {"taskId": f"task_{job.id.replace('-', '')}"})

    @r.get(PREFIX + "/statusTask/happyHorse")
    async def poll(request: web.Request) -> web.Response:
        sim.record_request(name, "GET", request.path_qs, dict(request.headers), None)
        if (resp := auth(request)) is not None:
            return resp
        task_id = request.query.get("taskId", "")
        if not task_id:
            return _bad_request("Missing required query parameter: taskId")
        view = sim.view(_job_id(task_id)) if task_id.startswith("task_") else None
        if view is None:
            return _envelope(404, "Task not found", None, status=404)
        job = view.job
        created_ms = int((time.time() - view.elapsed) * 1000)
        data: dict = {"taskId": task_id, "state": "pending", "createTime": created_ms}
        if view.state == "running":
            data["state"] = "processing"
        elif view.state == "succeeded":
            done_ms = int((job.finished_at or time.time()) * 1000)
            data.update(state="success", resultJson=json.dumps({"resultUrls": [video_url(request, sim, job.id)]}),
                        costTime=done_ms - created_ms, completeTime=done_ms)
        elif view.state == "failed":
            data.update(state="failed", failCode="GENERATION_FAILED", failMsg=view.error)
        return _envelope(200, "success", data)

    return r


def _invalid(detail: str) -> HostError:
    return HostError(400, "InvalidParameter", detail)


def _job_id(task_id: str) -> str:
    """task_<32 hex> back to the simulator's uuid."""
    try:
        return str(uuid.UUID(task_id.removeprefix("task_")))
    except ValueError:
        return ""


async def _parse_submit(sim: SimCore, body) -> JobSpec:
    if not isinstance(body, dict):
        raise _invalid("request body must be a JSON object")
    request_type = body.get("request_type", "async")
    if request_type not in ("async", "callback"):
        raise _invalid("request_type must be async or callback")
    if request_type == "callback" and not str(body.get("callback_url", "")).startswith("https://"):
        raise _invalid("callback_url (a public HTTPS URL) is required when request_type is callback")
    if body.get("provider", "auto") not in ("auto", "value", "official"):
        raise _invalid("provider must be auto, value or official")
    inp = body.get("input")
    if not isinstance(inp, dict):
        raise _invalid("Missing required field: input")
    unknown = sorted(set(inp) - INPUT_FIELDS)
    if unknown:
        raise _invalid(f"Unknown field: input.{unknown[0]}")
    mode = MODES.get(inp.get("mode"))
    if mode is None:
        raise _invalid(f"input.mode must be one of {', '.join(MODES)}")
    prompt = inp.get("prompt", "")
    if not isinstance(prompt, str) or (mode != "i2v" and not prompt.strip()):
        raise _invalid("Missing required field: input.prompt")
    if len(prompt) > 2500:
        raise _invalid("input.prompt exceeds 2500 characters")
    resolution = inp.get("resolution", "720p")
    if resolution not in ("720p", "1080p"):
        raise _invalid("input.resolution must be 720p or 1080p")
    ratio = None
    if "ratio" in inp and mode not in ("t2v", "r2v"):
        raise _invalid("input.ratio only applies to text-to-video and reference-to-video")
    if mode in ("t2v", "r2v"):
        ratio = inp.get("ratio", "16:9")
        if ratio not in RATIOS_10:
            raise _invalid(f"input.ratio must be one of {', '.join(RATIOS_10)}")
    duration = 5
    if mode != "edit":      # video-edit ignores duration, as documented
        duration = int_param(inp.get("duration", 5), "input.duration", 3, 15)
    watermark = inp.get("watermark", False)
    if not isinstance(watermark, bool):
        raise _invalid("input.watermark must be a boolean")
    seed = int_param(inp.get("seed", 0), "input.seed", 0, 2147483647)
    if "audio_setting" in inp and mode != "edit":
        raise _invalid("input.audio_setting only applies to video-edit")
    audio = inp.get("audio_setting", "auto")
    if audio not in ("auto", "origin"):
        raise _invalid("input.audio_setting must be auto or origin")

    images = inp.get(IMAGE_FIELD, [])
    lo, hi = IMAGE_COUNTS[mode]
    if not isinstance(images, list) or not lo <= len(images) <= hi:
        count = f"exactly {lo}" if lo == hi else f"{lo}-{hi}"
        raise _invalid(f"{inp['mode']} takes {count} image(s) in input.{IMAGE_FIELD}")
    video = inp.get(VIDEO_FIELD)
    if (mode == "edit") != isinstance(video, str):
        raise _invalid(f"video-edit requires exactly 1 input video in input.{VIDEO_FIELD}; other modes "
                                 f"take none")

    spec = JobSpec(provider="apixo", mode=mode, version="1.0", prompt=prompt, resolution=resolution,
                   aspect_ratio=ratio, duration_s=duration, seed=seed, watermark=watermark, audio_setting=audio,
                   model="happyHorse")
    for i, url in enumerate(images):
        field = f"input.{IMAGE_FIELD}[{i}]"
        data = await _fetch(sim, url, field)
        check_image(data, field, 400 if mode == "r2v" else 300, max_bytes=10 << 20)   # edit refs: 300 px
        if mode == "i2v":
            spec.first_frame = data
        else:
            spec.reference_images.append(data)
    if video is not None:
        spec.source_video = await _fetch(sim, video, f"input.{VIDEO_FIELD}")
        check_video(spec.source_video, f"input.{VIDEO_FIELD}")
    return spec


async def _fetch(sim: SimCore, url, field: str) -> bytes:
    try:
        return await sim.fetch_media(str(url), allow_data_uri=False)
    except SimMediaError as exc:
        raise _invalid(f"{field}: {exc}; use a publicly accessible URL") from None
