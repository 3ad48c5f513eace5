"""APIXO (apixo.ai): HappyHorse 1.0 under the model path `happyHorse` [S1], kie-style task API.

Base https://api.apixo.ai/api/v1. Submit POST /generateTask/happyHorse with
{"request_type": "async", "input": {"mode": "text-to-video" | "image-to-video" | "reference-to-video" |
"video-edit", "prompt", "resolution", "ratio" (t2v/r2v), "duration" (not edit), "watermark", "seed",
"audio_setting" (edit), <images>, <video>}}; poll GET /statusTask/happyHorse?taskId=... No cancel API.
All four modes, 1.0 only. Prompt up to 2500 characters. Inputs are URLs ("use a publicly accessible URL"),
so byte inputs need an upload bucket. Resolution and watermark are always sent (hosts disagree on defaults);
the optional `provider` routing field is left at APIXO's default ("auto").

Every reply is an envelope {"code", "message", "data"}. Refusals come as HTTP errors with the same code in the
envelope, but a non-200 `code` can also arrive inside an HTTP 200 reply (the documented "Insufficient credits"
example shows only the body). reply_status reads that in-body code as the reply's status, so the transport treats
an in-body 429 / 5xx exactly like a real one (polls retried with backoff, a submit's 429 waited out) and an
in-body 4xx as the refusal it is.
A task's result is `data.resultJson`, a JSON *string* {"resultUrls": [...]}; failures carry failCode / failMsg.
Edit is billed min(input, 15 s) x 2 x rate [S1].

Undocumented ([U]) and guessed here, each one constant below:
  IMAGE_FIELD / VIDEO_FIELD - the media field names of `input` (APIXO's other models take `image_urls`).
  CREDIT_MARKERS - how "no credits" is recognised (documented as code 400 "Insufficient credits", or the task
                   failCode INSUFFICIENT_CREDITS; 402 is accepted too).
  PRICES - the 0.125-0.225 USD/s range is split as 720p / 1080p.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from ..engine.capabilities import RATIOS_10, ImageLimits, ProviderCaps, VersionCaps
from ..engine.errors import ProviderError
from ..engine.http import HttpCall, HttpReply
from ..engine.pricing import PriceTable
from ..engine.request import GenerationRequest
from .base import JobState, JobStatus, MediaRef, ProviderAdapter, body_dict, check_task_id, require

MODES = {"t2v": "text-to-video", "i2v": "image-to-video", "r2v": "reference-to-video", "edit": "video-edit"}
# [U] guess: input image URLs (first frame, or references) go in `image_urls`, as on APIXO's image models.
IMAGE_FIELD = "image_urls"
# [U] guess: the edit source goes in `video_url` (the docs say "exactly 1 input video URL" without the name).
VIDEO_FIELD = "video_url"
# [U] guess: APIXO's documented no-credit answer is {"code": 400, "message": "Insufficient credits"}.
CREDIT_MARKERS = ("insufficient credit", "insufficient balance", "INSUFFICIENT_CREDITS")

STATES = {"pending": "queued", "processing": "running", "success": "succeeded", "failed": "failed"}

CAPS = ProviderCaps(
    name="apixo",
    display_name="APIXO",
    key_env="APIXO_API_KEY",
    versions={"1.0": VersionCaps(modes=("t2v", "i2v", "r2v", "edit"), aspect_ratios=RATIOS_10)},
    prompt_max_chars=2500,
    prompt_cjk_counts_double=False,     # "up to 2500 characters", whatever the script
    accepts_data_uri=False,
    supports_seed=True,
    supports_watermark=True,
    supports_cancel=False,
    image_limits=ImageLimits(max_bytes=10 * 1024 * 1024),   # IMAGE_TOO_LARGE: "resize to under 10MB"
    notes="public URLs only (configure an upload bucket for local files); HappyHorse 1.0 with video edit",
)

PRICES = PriceTable(
    # [U] guess: the published range 0.125-0.225 USD/s read as 720p / 1080p.
    usd_per_second={("1.0", "720p"): 0.125, ("1.0", "1080p"): 0.225},
    edit_billing="input_plus_output",   # min(input, 15) x 2 x rate [S1]
    source="APIXO HappyHorse page (0.125-0.225 USD/s, split by resolution)",
)


class ApixoAdapter(ProviderAdapter):
    name = "apixo"
    caps = CAPS
    prices = PRICES
    default_base_url = "https://api.apixo.ai/api/v1"
    poll_min_s = 3.0                    # APIXO asks to poll after an initial wait, not at once

    def submit_call(self, req: GenerationRequest, media: list[MediaRef]) -> HttpCall:
        inp: dict[str, Any] = {"mode": MODES[req.mode]}
        if req.prompt or req.mode != "i2v":          # optional for image-to-video only
            inp["prompt"] = req.prompt
        inp["resolution"] = req.resolution
        if req.effective_aspect_ratio is not None:
            inp["ratio"] = req.effective_aspect_ratio
        if req.effective_duration_s is not None:
            inp["duration"] = req.effective_duration_s
        inp["watermark"] = bool(req.watermark)
        if req.seed is not None:
            inp["seed"] = req.seed
        if req.mode == "edit":
            inp["audio_setting"] = req.audio_setting or "auto"
        images = [m.url for m in media if m.role in ("first_frame", "reference_image")]
        if images:
            inp[IMAGE_FIELD] = images
        video = next((m.url for m in media if m.role == "video"), None)
        if video is not None:
            inp[VIDEO_FIELD] = video
        return HttpCall("POST", "/generateTask/happyHorse", json={"request_type": "async", "input": inp})

    def parse_submit(self, reply: HttpReply) -> str:
        body = body_dict(reply)
        if isinstance(body.get("code"), int) and body["code"] != 200:
            self._envelope(reply)           # a refusal inside the envelope: raises it
        data = body.get("data")
        return self.task_id(reply, data.get("taskId") if isinstance(data, dict) else None, "no data.taskId")

    def poll_call(self, task_id: str) -> HttpCall:
        return HttpCall("GET", "/statusTask/happyHorse", params={"taskId": check_task_id(task_id)})

    def parse_poll(self, reply: HttpReply) -> JobStatus:
        data = self._envelope(reply)
        raw = str(data.get("state", ""))
        state = self.job_state(reply, raw, STATES, "data.state")
        if state == JobState.UNRECOGNIZED:
            return JobStatus(state=state, raw_state=raw)
        usage = {k: data[k] for k in ("costTime", "createTime", "completeTime") if k in data} or None
        if raw == "failed":
            return JobStatus(state="failed", raw_state=raw, error_code=str(data.get("failCode") or ""),
                             error_message=str(data.get("failMsg") or ""), usage=usage)
        if raw != "success":
            return JobStatus(state=state, raw_state=raw)
        try:
            result = json.loads(data.get("resultJson") or "")
        except (TypeError, json.JSONDecodeError):
            result = None
        urls = result.get("resultUrls") if isinstance(result, dict) else None
        require(isinstance(urls, list) and bool(urls), self, reply, "resultJson without resultUrls")
        return JobStatus(state="succeeded", raw_state=raw, video_url=str(urls[0]), usage=usage)

    def reply_status(self, reply: HttpReply) -> int:
        code = body_dict(reply).get("code")
        if 200 <= reply.status < 300 and isinstance(code, int) and not isinstance(code, bool) and code != 200:
            return code
        return reply.status

    def _envelope(self, reply: HttpReply) -> dict:
        """`data` of a {code, message, data} reply; a non-200 code inside an HTTP 200 reply is an error."""
        body = body_dict(reply)
        code = body.get("code")
        if isinstance(code, int) and code != 200:
            raise self.map_error(dataclasses.replace(reply, status=code))
        data = body.get("data")
        require(isinstance(data, dict), self, reply, "no data object")
        return data

    def map_error(self, reply: HttpReply) -> ProviderError:
        body = body_dict(reply)
        message = str(body.get("message") or reply.body or f"HTTP {reply.status}")
        detail = body.get("data", {}).get("error") if isinstance(body.get("data"), dict) else None
        text = f"{message}: {detail}" if detail else message
        if reply.status == 401:
            return self._error(reply, self.auth_message(), kind="auth", code="401")
        if reply.status == 402 or any(marker.lower() in text.lower() for marker in CREDIT_MARKERS):
            return self._error(reply, f"the account has no credits left ({message}); top up in the APIXO "
                                      f"console", kind="credits", code=str(reply.status))
        if reply.status == 403:
            return self._error(reply, f"access denied ({text}); check that {self.caps.key_env} may use "
                                      f"HappyHorse", kind="auth", code="403")
        kind = self._kind_for_status(reply.status)
        if kind == "rate_limit":
            return self._error(reply, f"rate limited ({text}); slow down or retry later", kind=kind, code="429")
        if kind == "server":
            text = f"server error (code {reply.status}): {text}; try again later"
        return self._error(reply, text, kind=kind, code=str(reply.status))
