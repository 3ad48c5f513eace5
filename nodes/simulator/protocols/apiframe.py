"""Simulated Apiframe: /apiframe/v2/... as providers.md section 4 and Apiframe's Happy Horse pages describe.

Auth is the `X-API-Key` header (a Bearer header is not accepted). POST /v2/videos/generate answers HTTP 202
{"jobId", "status": "QUEUED"}; GET /v2/jobs/{id} answers {id, status: QUEUED | PROCESSING | COMPLETED | FAILED,
progress (0-100), result: {videoUrl} | null, error (string) | null, creditCost}. No edit, no cancel.
The mode comes from the image count in the model's own parameter block: happyhorse11Params.images (0 = t2v,
1 = i2v, 2-9 = r2v) or happyhorse10Params.image (absent = t2v, present = i2v). Every image side >= 300 px.
402 reports the balance and the job's cost. Failed jobs cost nothing (creditCost 0).
Guesses kept in step with providers/apiframe.py: error bodies {"error": {"code", "message"}}; images must be
URLs (data: URIs refused); a prompt is required in every mode; 1.0 takes `duration`. 1.0 is charged 24 / 48
credits per second (720p / 1080p). Parameters outside a block's documented set are refused.
"""
from __future__ import annotations

from aiohttp import web

from ..core import JobSpec, SimCore, SimMediaError
from .common import RATIOS_10, HostError, accept_submit, check_image, int_param, key_problem, video_url

PREFIX = "/apiframe"
MODELS = {"happyhorse-1.1": ("1.1", "happyhorse11Params"), "happyhorse-1.0": ("1.0", "happyhorse10Params")}
BLOCK_FIELDS = {"happyhorse11Params": {"images", "resolution", "aspect_ratio", "duration", "seed"},
                "happyhorse10Params": {"image", "resolution", "aspect_ratio", "duration", "seed"}}
TOP_FIELDS = {"prompt", "model", "webhookUrl", "webhookEvents"} | set(BLOCK_FIELDS)
# Apiframe's published rates (1.1 [S2], 1.0 its Happy Horse 1.0 page).
CREDITS_PER_SECOND = {("1.1", "720p"): 24, ("1.1", "1080p"): 31, ("1.0", "720p"): 24, ("1.0", "1080p"): 48}
STATUS = {"queued": "QUEUED", "running": "PROCESSING", "succeeded": "COMPLETED", "failed": "FAILED"}
ERROR_CODES = {400: "INVALID_REQUEST", 401: "UNAUTHORIZED", 402: "INSUFFICIENT_CREDITS", 404: "NOT_FOUND",
               429: "RATE_LIMITED"}

# Where the submit reply keeps the task id and the poll reply the status word (for injected quirks).
SUBMIT_ID = ("jobId",)
STATUS_WORD = ("status",)


def stage_of(method: str, path: str) -> str | None:
    if method == "POST" and path.endswith("/v2/videos/generate"):
        return "submit"
    if method == "GET" and "/v2/jobs/" in path:
        return "poll"
    return None


def error_response(status: int, message: str, headers: dict | None = None) -> web.Response:
    return _error(status, message, headers=headers)


def _error(status: int, message: str, *, headers: dict | None = None, **extra) -> web.Response:
    err = {"code": ERROR_CODES.get(status, "INTERNAL_ERROR"), "message": message, **extra}
    return web.json_response({"error": err}, status=status, headers=headers)


def routes(sim: SimCore) -> web.RouteTableDef:
    r = web.RouteTableDef()
    name = "apiframe"

    def auth(request: web.Request) -> str | None:
        """The key's problem, or None; only X-API-Key counts (a Bearer header is ignored)."""
        problem = key_problem(request.headers.get("X-API-Key", "").strip() or None)
        return problem if problem in ("missing", "invalid") else None

    def refuse_key(request: web.Request) -> web.Response | None:
        if auth(request):
            return _error(401, "Invalid or missing API key. Send it in the X-API-Key header.")
        return None

    @r.post(PREFIX + "/v2/videos/generate")
    async def submit(request: web.Request) -> web.Response:
        spec, refusal = await accept_submit(sim, name, request, auth=refuse_key, parse=_parse_submit,
                                            on_error=lambda e: _error(e.status, e.message))
        if refusal is not None:
            return refusal
        cost = _credits(spec.version, spec.resolution, spec.duration_s)
        if key_problem(request.headers["X-API-Key"]) == "credits":
            return _error(402, "Insufficient credits", balance=0, required=cost)
        job = sim.create_job(spec)
        return web.json_response({"jobId": job.id, "status": "QUEUED"}, status=202)

    @r.get(PREFIX + "/v2/jobs/{job_id}")
    async def poll(request: web.Request) -> web.Response:
        sim.record_request(name, "GET", request.path, dict(request.headers), None)
        if auth(request):
            return _error(401, "Invalid or missing API key. Send it in the X-API-Key header.")
        view = sim.view(request.match_info["job_id"])
        if view is None:
            return _error(404, "Job not found")
        job = view.job
        done = view.state == "succeeded"
        return web.json_response({
            "id": job.id, "status": STATUS[view.state], "progress": round(view.progress * 100),
            "result": {"videoUrl": video_url(request, sim, job.id)} if done else None,
            "error": view.error if view.state == "failed" else None,
            "creditCost": 0 if view.state == "failed" else _credits(job.spec.version, job.spec.resolution,
                                                                     job.out_seconds)})

    return r


def _credits(version: str, resolution: str, seconds: float) -> float | None:
    rate = CREDITS_PER_SECOND.get((version, resolution))
    return None if rate is None else rate * seconds


async def _parse_submit(sim: SimCore, body) -> JobSpec:
    if not isinstance(body, dict):
        raise HostError(400, "INVALID_REQUEST", "Request body must be a JSON object")
    unknown = sorted(set(body) - TOP_FIELDS)
    if unknown:
        raise HostError(400, "INVALID_REQUEST", f"Unknown field: {unknown[0]}")
    if body.get("model") not in MODELS:
        raise HostError(400, "INVALID_REQUEST", f"Unknown model {body.get('model')!r}")
    version, block = MODELS[body["model"]]
    other_blocks = sorted(b for b in BLOCK_FIELDS if b != block and b in body)
    if other_blocks:
        raise HostError(400, "INVALID_REQUEST",
                        f"{other_blocks[0]} does not apply to model {body['model']}; use {block}")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > 4000:
        raise HostError(400, "INVALID_REQUEST", "prompt is required (at most 4000 characters)")
    params = body.get(block, {})
    if not isinstance(params, dict):
        raise HostError(400, "INVALID_REQUEST", f"{block} must be an object")
    unknown = sorted(set(params) - BLOCK_FIELDS[block])
    if unknown:
        raise HostError(400, "INVALID_REQUEST", f"Unknown parameter {block}.{unknown[0]}")

    if version == "1.1":
        images = params.get("images", [])
        if not isinstance(images, list) or len(images) > 9:
            raise HostError(400, "INVALID_REQUEST", f"{block}.images takes at most 9 images")
    else:
        images = [params["image"]] if "image" in params else []
    mode = {0: "t2v", 1: "i2v"}.get(len(images), "r2v")
    resolution = params.get("resolution", "1080p")
    if resolution not in ("720p", "1080p"):
        raise HostError(400, "INVALID_REQUEST", f"{block}.resolution must be 720p or 1080p")
    ratio = params.get("aspect_ratio", "16:9")
    if ratio not in RATIOS_10:
        raise HostError(400, "INVALID_REQUEST", f"{block}.aspect_ratio must be one of {', '.join(RATIOS_10)}")
    duration = int_param(params.get("duration", 5), f"{block}.duration", 3, 15)
    seed = int_param(params.get("seed", 0), f"{block}.seed", 0, 2147483647)

    spec = JobSpec(provider="apiframe", mode=mode, version=version, prompt=prompt, resolution=resolution,
                   aspect_ratio=None if mode == "i2v" else ratio, duration_s=duration, seed=seed,
                   model=body["model"])
    for i, url in enumerate(images):
        where = f"{block}.images[{i}]" if version == "1.1" else f"{block}.image"
        try:
            data = await sim.fetch_media(str(url), allow_data_uri=False)
        except SimMediaError as exc:
            raise HostError(400, "INVALID_REQUEST", f"{where}: {exc}") from None
        check_image(data, where, 300)
        if mode == "i2v":
            spec.first_frame = data
        else:
            spec.reference_images.append(data)
    return spec
