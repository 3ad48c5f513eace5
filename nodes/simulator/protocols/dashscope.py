"""Simulated DashScope: /dashscope/api/v1/... exactly as providers.md section 1 describes.

The account's task list, GET /api/v1/tasks?start_time=&end_time=&model_name=&status=&page_no=&page_size=
(times YYYYMMDDhhmmss, read here as Beijing time, UTC+8): {"request_id", "data": [{"task_id", "status",
"model_name", "gmt_create" (epoch ms), "region", ...}], "total", "total_page", "page_no", "page_size"}, newest
first, page_size at most 100.

Video edit as its own API page says: an optional `parameters.ratio` (unset keeps the source's shape), a source
video shaped 1:2.5..2.5:1, reference images with a short side >= 300 px and <= 10 MB.

The temporary upload store is simulated too: getPolicy hands out an HMAC-signed OSS PostObject policy whose
upload_host is /dashscope/oss on this server (under the prefix, so upload faults can be injected), and that
route checks the form the way OSS does before storing the file in sim.blobs, where oss:// URLs resolve.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from datetime import datetime, timezone

from aiohttp import web

from ..core import JobSpec, SimCore, SimMediaError
from .common import (RATIOS_10, RATIOS_11, HostError, accept_submit, bearer_key, check_image, check_video, int_param,
                     key_problem, video_url)

PREFIX = "/dashscope"
MODELS = {f"happyhorse-{v}-{m}": (v, mode) for v, modes in (("1.0", ("t2v", "i2v", "r2v", "video-edit")),
                                                           ("1.1", ("t2v", "i2v", "r2v")))
          for m in modes for mode in [("edit" if m == "video-edit" else m)]}
OSS_PATH = PREFIX + "/oss"
OSS_ACCESS_KEY_ID = "LTAI5tSimulatedUpload"
POLICY_TTL_S = 300                 # the policy itself; the uploaded file lives 48 h
MAX_FILE_SIZE_MB = 100
OSS_FORM_FIELDS = ("OSSAccessKeyId", "Signature", "policy", "key", "x-oss-object-acl", "x-oss-forbid-overwrite",
                   "success_action_status")
STATUS = {"queued": "PENDING", "running": "RUNNING", "succeeded": "SUCCEEDED", "failed": "FAILED",
          "canceled": "CANCELED"}

# Where the submit reply keeps the task id and the poll reply the status word (for injected quirks).
SUBMIT_ID = ("output", "task_id")
STATUS_WORD = ("output", "task_status")


def stage_of(method: str, path: str) -> str | None:
    """Which job stage a request belongs to, for fault injection (submit | poll | cancel | upload)."""
    if method == "POST" and path.endswith("/video-synthesis"):
        return "submit"
    if method == "GET" and "/api/v1/tasks/" in path:
        return "poll"
    if method == "GET" and path.endswith("/api/v1/tasks"):
        return "list"
    if method == "POST" and path.endswith("/cancel"):
        return "cancel"
    if (method == "GET" and path.endswith("/api/v1/uploads")) or (method == "POST" and path == OSS_PATH):
        return "upload"
    return None


def error_response(status: int, message: str, headers: dict | None = None) -> web.Response:
    """The host's error body for an injected HTTP failure."""
    code = {429: "Throttling.RateQuota", 500: "InternalError", 502: "InternalError", 503: "InternalError"}.get(
        status, "InternalError")
    return _error(status, code, message, headers)


def _error(status: int, code: str, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"code": code, "message": message, "request_id": str(uuid.uuid4())},
                             status=status, headers=headers)


def _oss_error(status: int, code: str, message: str) -> web.Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<RequestId>{uuid.uuid4().hex.upper()}</RequestId><HostId>dashscope-file-sim</HostId></Error>")
    return web.Response(status=status, text=body, content_type="application/xml")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def routes(sim: SimCore) -> web.RouteTableDef:
    r = web.RouteTableDef()
    name = "dashscope"
    policy_secret = os.urandom(16)        # signs this server's upload policies (OSS: the AccessKeySecret)
    issued: dict[str, str] = {}           # upload_dir -> the model its policy was issued for

    def auth(request: web.Request) -> web.Response | None:
        problem = key_problem(bearer_key(request))
        if problem in ("missing", "invalid"):
            return _error(401, "InvalidApiKey", "Invalid API-key provided.")
        if problem == "credits":
            return _error(400, "Arrearage", "Access denied, please make sure your account is in good standing.")
        return None

    def submit_check(request: web.Request, body) -> web.Response | None:
        if request.headers.get("X-DashScope-Async", "").lower() != "enable":
            return _error(403, "AccessDenied", "current user api does not support synchronous calls")
        if (foreign := _foreign_upload(body, issued)) is not None:
            return _error(400, "InvalidParameter", foreign)
        return None

    @r.post(PREFIX + "/api/v1/services/aigc/video-generation/video-synthesis")
    async def submit(request: web.Request) -> web.Response:
        spec, refusal = await accept_submit(sim, name, request, auth=auth, check=submit_check,
                                            parse=lambda sim, body: _parse_submit(sim, body, request),
                                            on_error=lambda e: _error(e.status, e.code, e.message))
        if refusal is not None:
            return refusal
        job = sim.create_job(spec)
        return web.json_response({"output": {"task_status": "PENDING", "task_id": job.id},
                                  "request_id": str(uuid.uuid4())})

    @r.get(PREFIX + "/api/v1/tasks/{task_id}")
    async def poll(request: web.Request) -> web.Response:
        sim.record_request(name, "GET", request.path, dict(request.headers), None)
        if (resp := auth(request)) is not None:
            return resp
        task_id = request.match_info["task_id"]
        view = sim.view(task_id)
        if view is None:
            return web.json_response({"request_id": str(uuid.uuid4()),
                                      "output": {"task_id": task_id, "task_status": "UNKNOWN"}})
        job = view.job
        submitted = time.time() - view.elapsed
        out: dict = {"task_id": job.id, "task_status": STATUS[view.state], "submit_time": _iso(submitted)}
        if view.state != "queued" and view.elapsed >= job.timing.queue_s:
            out["scheduled_time"] = _iso(submitted + job.timing.queue_s)     # when it started running
        body: dict = {"request_id": str(uuid.uuid4()), "output": out}
        if view.state == "succeeded":
            out.update({"end_time": _iso(job.finished_at or time.time()), "orig_prompt": job.spec.prompt,
                        "video_url": video_url(request, sim, job.id)})
            usage = {"duration": job.out_seconds + job.in_seconds, "output_video_duration": job.out_seconds,
                     "video_count": 1, "SR": 720 if job.spec.resolution == "720p" else 1080}
            if job.spec.mode == "edit":
                usage["input_video_duration"] = job.in_seconds
            body["usage"] = usage
        elif view.state == "failed":
            out.update({"code": "InternalError.Algo", "message": view.error})
        return web.json_response(body)

    @r.get(PREFIX + "/api/v1/tasks")
    async def list_tasks(request: web.Request) -> web.Response:
        sim.record_request(name, "GET", request.path_qs, dict(request.headers), None)
        if (resp := auth(request)) is not None:
            return resp
        q = request.query
        try:
            since = _beijing_epoch(q["start_time"]) if "start_time" in q else time.time() - 24 * 3600
            until = _beijing_epoch(q["end_time"]) if "end_time" in q else time.time()
            page, size = int(q.get("page_no", 1)), int(q.get("page_size", 10))
        except ValueError:
            return _error(400, "InvalidParameter", "start_time / end_time must be YYYYMMDDhhmmss; page_no / "
                                                   "page_size integers")
        if not 1 <= size <= 100 or page < 1:
            return _error(400, "InvalidParameter", "page_size must be 1-100 and page_no at least 1")
        rows = []
        for job in sorted(sim.jobs.values(), key=lambda j: j.created_wall, reverse=True):
            if job.spec.provider != name or not since <= job.created_wall <= until:
                continue
            if q.get("model_name") and job.spec.model != q["model_name"]:
                continue
            view = sim.view(job.id)
            status = STATUS[view.state]
            if q.get("status") and status != q["status"]:
                continue
            rows.append({"task_id": job.id, "status": status, "model_name": job.spec.model,
                         "gmt_create": int(job.created_wall * 1000), "region": "ap-southeast-1",
                         "request_id": str(uuid.uuid4())})
        pages = max(1, -(-len(rows) // size))
        return web.json_response({"request_id": str(uuid.uuid4()), "data": rows[(page - 1) * size: page * size],
                                  "total": len(rows), "total_page": pages, "page_no": page, "page_size": size})

    @r.post(PREFIX + "/api/v1/tasks/{task_id}/cancel")
    async def cancel(request: web.Request) -> web.Response:
        sim.record_request(name, "POST", request.path, dict(request.headers), None)
        if (resp := auth(request)) is not None:
            return resp
        if sim.cancel(request.match_info["task_id"]):
            return web.json_response({"request_id": str(uuid.uuid4())})
        return _error(400, "UnsupportedOperation", "Failed to cancel the task, please confirm the task status.")

    def sign(policy: str) -> str:
        return base64.b64encode(hmac.new(policy_secret, policy.encode(), hashlib.sha1).digest()).decode()

    @r.get(PREFIX + "/api/v1/uploads")
    async def get_policy(request: web.Request) -> web.Response:
        sim.record_request(name, "GET", request.path_qs, dict(request.headers), None)
        if (resp := auth(request)) is not None:
            return resp
        if request.query.get("action") != "getPolicy":
            return _error(400, "InvalidParameter", "action must be getPolicy")
        model = request.query.get("model", "")
        if model not in MODELS:
            return _error(404, "ModelNotFound", f"Model not exist: {model}")
        upload_dir = f"dashscope-instant/{uuid.uuid4().hex}/{time.strftime('%Y-%m-%d')}/{uuid.uuid4().hex[:8]}"
        issued[upload_dir] = model
        conditions = [["content-length-range", 0, MAX_FILE_SIZE_MB << 20], ["starts-with", "$key", upload_dir],
                      {"x-oss-object-acl": "private"}, {"x-oss-forbid-overwrite": "true"},
                      {"success_action_status": "200"}]
        expiration = datetime.fromtimestamp(time.time() + POLICY_TTL_S, timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%S.000Z")
        policy = base64.b64encode(json.dumps({"expiration": expiration, "conditions": conditions}).encode()).decode()
        return web.json_response({"request_id": str(uuid.uuid4()), "data": {
            "policy": policy, "signature": sign(policy), "upload_dir": upload_dir,
            "upload_host": f"{request.scheme}://{request.host}{OSS_PATH}", "expire_in_seconds": POLICY_TTL_S,
            "max_file_size_mb": MAX_FILE_SIZE_MB, "capacity_limit_mb": 999999999,
            "oss_access_key_id": OSS_ACCESS_KEY_ID, "x_oss_object_acl": "private", "x_oss_forbid_overwrite": "true"}})

    @r.post(OSS_PATH)
    async def oss_post_object(request: web.Request) -> web.Response:
        """OSS PostObject: the signed form authorizes the upload; the file must be the last part."""
        if not request.content_type.startswith("multipart/form-data"):
            return _oss_error(400, "InvalidArgument", "PostObject needs a multipart/form-data body")
        fields: dict[str, str] = {}
        order: list[str] = []
        data: bytes | None = None
        content_type = "application/octet-stream"
        async for part in await request.multipart():
            order.append(part.name or "")
            if data is not None:
                continue        # read on, so the recorded order shows what came after the file
            if part.name == "file":
                data = bytes(await part.read())
                content_type = part.headers.get("Content-Type", content_type)
            else:
                fields[part.name or ""] = await part.text()
        sim.record_request(name, "POST", request.path, dict(request.headers),
                           {"fields": order, "file_bytes": len(data or b"")})
        if "Authorization" in request.headers:
            return _oss_error(400, "InvalidArgument", "PostObject is authorized by its signed form; it must not "
                                                      "carry an Authorization header")
        if data is None:
            return _oss_error(400, "InvalidArgument", "the form has no file field")
        if order[-1] != "file":
            return _oss_error(400, "InvalidArgument", "the file field must be the last field of the form")
        missing = [f for f in OSS_FORM_FIELDS if f not in fields]
        if missing:
            return _oss_error(400, "InvalidArgument", f"missing form fields: {', '.join(missing)}")
        if fields["OSSAccessKeyId"] != OSS_ACCESS_KEY_ID:
            return _oss_error(403, "InvalidAccessKeyId", "The OSS Access Key Id you provided does not exist.")
        if not hmac.compare_digest(fields["Signature"], sign(fields["policy"])):
            return _oss_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match "
                                                            "the signature you provided.")
        policy = json.loads(base64.b64decode(fields["policy"]))
        expires = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%S.000Z").replace(tzinfo=timezone.utc)
        if expires.timestamp() < time.time():
            return _oss_error(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
        for cond in policy["conditions"]:
            if isinstance(cond, dict):
                broken = [k for k, v in cond.items() if fields.get(k) != v]
            elif cond[0] == "starts-with":
                broken = [] if fields.get(cond[1].lstrip("$"), "").startswith(cond[2]) else [cond[1]]
            else:       # content-length-range
                if not cond[1] <= len(data) <= cond[2]:
                    return _oss_error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.")
                broken = []
            if broken:
                return _oss_error(403, "AccessDenied", f"Invalid according to Policy: Policy Condition failed: "
                                                       f"{broken[0]}")
        key = fields["key"]
        if key in sim.blobs:        # x-oss-forbid-overwrite: true
            return _oss_error(409, "FileAlreadyExists", "The object you specified already exists and can not be "
                                                        "overwritten.")
        sim.blobs[key] = (data, content_type)
        return web.Response(status=200)

    return r


def _beijing_epoch(stamp: str) -> float:
    """YYYYMMDDhhmmss in Beijing time (UTC+8) -> epoch seconds."""
    t = datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
    return t.timestamp() - 8 * 3600


def _foreign_upload(body, issued: dict[str, str]) -> str | None:
    """DashScope resolves an oss:// file only for the model named when its upload policy was issued."""
    inp = body.get("input") if isinstance(body, dict) else None
    media = inp.get("media") if isinstance(inp, dict) else None
    for m in media if isinstance(media, list) else []:
        url = str(m.get("url", "")) if isinstance(m, dict) else ""
        model = issued.get(url[len("oss://"):].rsplit("/", 1)[0]) if url.startswith("oss://") else None
        if model is not None and model != body.get("model"):
            return f"{url} was uploaded for {model}; upload it again for {body.get('model')}"
    return None


async def _parse_submit(sim: SimCore, body, request: web.Request) -> JobSpec:
    if not isinstance(body, dict):
        raise HostError(400, "InvalidParameter", "request body must be a JSON object")
    model = body.get("model")
    if model not in MODELS:
        raise HostError(404, "ModelNotFound", f"Model not exist: {model}")
    version, mode = MODELS[model]
    inp = body.get("input") or {}
    params = body.get("parameters") or {}
    if not isinstance(inp, dict) or not isinstance(params, dict):
        raise HostError(400, "InvalidParameter", "input and parameters must be objects")
    prompt = inp.get("prompt") or ""
    if not isinstance(prompt, str) or (mode != "i2v" and not prompt.strip()):
        raise HostError(400, "InvalidParameter", "Field required: input.prompt")
    if sum(2 if ord(ch) > 0x2E7F else 1 for ch in prompt) > 5000:
        raise HostError(400, "InvalidParameter", "input.prompt exceeds the length limit")
    resolution = params.get("resolution", "1080P")
    if resolution not in ("720P", "1080P"):
        raise HostError(400, "InvalidParameter", f"parameters.resolution must be 720P or 1080P, got {resolution!r}")
    ratios = RATIOS_10 if version == "1.0" else RATIOS_11
    ratio = None
    if mode in ("t2v", "r2v"):
        ratio = params.get("ratio", "16:9")
    elif mode == "edit":
        ratio = params.get("ratio")         # optional: unset keeps the source video's shape
    if ratio is not None and ratio not in ratios:
        raise HostError(400, "InvalidParameter", f"parameters.ratio {ratio!r} not in {list(ratios)}")
    duration = 5
    if mode != "edit":
        duration = int_param(params.get("duration", 5), "parameters.duration", 3, 15)
    seed = int_param(params.get("seed", 0), "parameters.seed", 0, 2147483647)
    watermark = params.get("watermark", True)
    if not isinstance(watermark, bool):
        raise HostError(400, "InvalidParameter", "parameters.watermark must be a boolean")
    audio = params.get("audio_setting", "auto")
    if audio not in ("auto", "origin"):
        raise HostError(400, "InvalidParameter", "parameters.audio_setting must be auto or origin")

    media = inp.get("media") or []
    if not isinstance(media, list):
        raise HostError(400, "InvalidParameter", "input.media must be a list")
    kinds = [m.get("type") for m in media if isinstance(m, dict)]
    if len(kinds) != len(media) or any(k not in ("first_frame", "reference_image", "video") for k in kinds):
        raise HostError(400, "InvalidParameter", "input.media[].type must be first_frame, reference_image or video")
    uses_oss = any(str(m.get("url", "")).startswith("oss://") for m in media)
    if uses_oss and request.headers.get("X-DashScope-OssResourceResolve", "").lower() != "enable":
        raise HostError(400, "InvalidParameter", "oss:// URLs need the header X-DashScope-OssResourceResolve: enable")
    expected = {"t2v": (0, 0, 0), "i2v": (1, 0, 0), "r2v": (0, None, 0), "edit": (0, None, 1)}[mode]
    n_first, n_ref, n_video = kinds.count("first_frame"), kinds.count("reference_image"), kinds.count("video")
    if n_first != expected[0] or n_video != expected[2]:
        raise HostError(400, "InvalidParameter", f"{model}: wrong media for this model "
                                                 f"(first_frame={n_first}, video={n_video})")
    if mode == "r2v" and not 1 <= n_ref <= 9:
        raise HostError(400, "InvalidParameter", "reference_image count must be 1-9")
    if mode == "edit" and n_ref > 5:
        raise HostError(400, "InvalidParameter", "reference_image count must be at most 5 for video edit")
    if mode in ("t2v", "i2v") and n_ref:
        raise HostError(400, "InvalidParameter", f"{model} takes no reference_image")

    spec = JobSpec(provider="dashscope", mode=mode, version=version, prompt=prompt,
                   resolution=resolution.lower(), aspect_ratio=ratio, duration_s=duration, seed=seed,
                   watermark=watermark, audio_setting=audio, model=model)
    for i, m in enumerate(media):
        try:
            data = await sim.fetch_media(str(m.get("url", "")))
        except SimMediaError as exc:
            raise HostError(400, "InvalidParameter", f"input.media[{i}]: {exc}") from None
        if m["type"] == "first_frame":
            check_image(data, f"input.media[{i}]", 300)
            spec.first_frame = data
        elif m["type"] == "reference_image":
            # Edit references follow the edit page (short side >= 300 px, <= 10 MB), r2v's 400 px otherwise.
            if mode == "edit":
                check_image(data, f"input.media[{i}]", 300, max_bytes=10 << 20)
            else:
                check_image(data, f"input.media[{i}]", 400)
            spec.reference_images.append(data)
        else:
            check_video(data, f"input.media[{i}]")
            spec.source_video = data
    return spec
