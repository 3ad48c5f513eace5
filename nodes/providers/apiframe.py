"""Apiframe (apiframe.ai): HappyHorse 1.1 as `happyhorse-1.1` [S2] and 1.0 as `happyhorse-1.0` [E].

Auth header `X-API-Key` (not Bearer). Submit POST /v2/videos/generate -> HTTP 202 {"jobId", "status": "QUEUED"}
(any 2xx with a jobId is taken as accepted);
poll GET /v2/jobs/{id} -> {id, status: QUEUED | PROCESSING | COMPLETED | FAILED, progress, result: {videoUrl},
error (a string), creditCost}. No cancel API. Failed jobs are refunded.

The mode is not named: Apiframe picks it from how many images come in the version's parameter block.
  1.1 `happyhorse11Params.images`: none = t2v, one = i2v, two to nine = r2v. So r2v with ONE reference cannot be
      expressed here and is refused before sending (r2v_min_refs=2), naming the providers that take one.
  1.0 `happyhorse10Params.image`: absent = t2v, one URL = i2v. No r2v, no edit.
`prompt` is always sent; `aspect_ratio` for t2v/r2v only (Apiframe ignores it for i2v); resolution always
(Apiframe defaults to 1080p, others to 720p); duration always; seed when set. There is no watermark field.
Price is in credits: 1.1 costs 24 (720p) / 31 (1080p) credits per second [S2], 1.0 24 (720p) / 48 (1080p)
[E: Apiframe's Happy Horse 1.0 page]; the credit's USD price is not published, so estimates give credits and say
the USD amount is unknown.

Undocumented ([U]) and guessed here, each in one place:
  ACCEPTS_DATA_URI - images are documented only as URLs (every example is a public https URL); data: URIs
                     are assumed refused, so byte inputs need an upload bucket.
  DURATION_FIELD["1.0"] - the 1.0 block's example shows no duration, but the 1.0 page sells 3-15 s; the 1.1
                          name `duration` is assumed.
  map_error - the error body is assumed {"error": {"code", "message"}}, a 402 adding "balance" and "required"
              (the FAQ says it reports both); a plain {"error": "..."} is read too.
  progress - a bare number in the job object [S2]; read as percent (0-100) of the whole job since submit,
             growing evenly (follow.Pace.progressed); a value outside 0-100 is ignored.
  prompt - taken to be required in every mode (it is a top-level field of every example), so an empty
           image-to-video prompt is refused before sending rather than sent into a 400.
"""
from __future__ import annotations

from typing import Any

from ..engine.capabilities import RATIOS_10, ImageLimits, ProviderCaps, VersionCaps
from ..engine.config import Secret
from ..engine.errors import ProviderError
from ..engine.http import HttpCall, HttpReply
from ..engine.pricing import PriceTable
from ..engine.promptcheck import IMAGE_STYLE
from ..engine.request import GenerationRequest
from .base import JobStatus, MediaRef, ProviderAdapter, body_dict, task_id_path

MODELS = {"1.0": "happyhorse-1.0", "1.1": "happyhorse-1.1"}
PARAMS_BLOCK = {"1.0": "happyhorse10Params", "1.1": "happyhorse11Params"}
# [U] guess: no data: URIs (see the docstring).
ACCEPTS_DATA_URI = False
# The duration field per parameter block; [U] guess for 1.0 (see the docstring).
DURATION_FIELD = {"1.1": "duration", "1.0": "duration"}

STATES = {"QUEUED": "queued", "PROCESSING": "running", "COMPLETED": "succeeded", "FAILED": "failed"}

CAPS = ProviderCaps(
    name="apiframe",
    display_name="Apiframe",
    key_env="APIFRAME_API_KEY",
    versions={
        # Two to nine images select reference-to-video: one reference would be read as a first frame.
        "1.1": VersionCaps(modes=("t2v", "i2v", "r2v"), aspect_ratios=RATIOS_10, r2v_min_refs=2),
        "1.0": VersionCaps(modes=("t2v", "i2v"), aspect_ratios=RATIOS_10),
    },
    prompt_max_chars=4000,
    prompt_cjk_counts_double=False,
    i2v_prompt_required=True,
    accepts_data_uri=ACCEPTS_DATA_URI,
    supports_seed=True,
    supports_watermark=False,
    supports_cancel=False,
    # "JPG, PNG, BMP, or WEBP; each side >= 300px" for every image, references included.
    image_limits=ImageLimits(reference_min_side=300),
    reference_token_style=IMAGE_STYLE,  # [S2]: "address them in the prompt as [Image 1]"
    notes="X-API-Key auth; mode chosen by image count (r2v needs 2-9 images); billed in credits",
)

PRICES = PriceTable(
    usd_per_second={},
    credits_per_second={("1.1", "720p"): 24, ("1.1", "1080p"): 31, ("1.0", "720p"): 24, ("1.0", "1080p"): 48},
    usd_per_credit=None,
    source="Apiframe Happy Horse docs: 1.1 24 / 31, 1.0 24 / 48 credits per second; the credit price is not "
           "published",
)


class ApiframeAdapter(ProviderAdapter):
    name = "apiframe"
    caps = CAPS
    prices = PRICES
    default_base_url = "https://api.apiframe.ai"

    def auth_headers(self, key: Secret) -> dict[str, str]:
        return {"X-API-Key": key.reveal()}

    def submit_call(self, req: GenerationRequest, media: list[MediaRef]) -> HttpCall:
        params: dict[str, Any] = {}
        if media:       # 1.1 takes a list (its length picks the mode), 1.0 one first-frame URL
            urls = [m.url for m in media]
            params.update({"images": urls} if req.version == "1.1" else {"image": urls[0]})
        params["resolution"] = req.resolution
        if req.effective_aspect_ratio is not None:
            params["aspect_ratio"] = req.effective_aspect_ratio
        params[DURATION_FIELD[req.version]] = req.effective_duration_s
        if req.seed is not None:
            params["seed"] = req.seed
        return HttpCall("POST", "/v2/videos/generate",
                        json={"prompt": req.prompt, "model": MODELS[req.version], PARAMS_BLOCK[req.version]: params})

    def parse_submit(self, reply: HttpReply) -> str:
        return self.task_id(reply, body_dict(reply).get("jobId"), "no jobId")

    def poll_call(self, task_id: str) -> HttpCall:
        return HttpCall("GET", f"/v2/jobs/{task_id_path(task_id)}")

    def parse_poll(self, reply: HttpReply) -> JobStatus:
        body = body_dict(reply)
        raw = str(body.get("status", ""))
        state = self.job_state(reply, raw, STATES, "status")
        usage = {"creditCost": body["creditCost"]} if body.get("creditCost") is not None else None
        result = body.get("result") if isinstance(body.get("result"), dict) else {}
        progress = body.get("progress")
        return JobStatus(state=state, raw_state=raw, video_url=result.get("videoUrl"),
                         error_message=str(body.get("error") or "") if raw == "FAILED" else "",
                         usage=usage, progress=progress / 100 if isinstance(progress, (int, float))
                         and not isinstance(progress, bool) and 0 <= progress <= 100 else None)

    def map_error(self, reply: HttpReply) -> ProviderError:
        body = body_dict(reply)
        err = body.get("error") if isinstance(body.get("error"), dict) else {"message": body.get("error")}
        code = str(err.get("code") or "")
        message = str(err.get("message") or body.get("message") or reply.body or f"HTTP {reply.status}")
        if reply.status in (401, 403):
            return self._error(reply, self.auth_message(), kind="auth", code=code)
        if reply.status == 402:
            owed = ""
            if err.get("balance") is not None and err.get("required") is not None:
                owed = f": balance {err['balance']} credits, this job needs {err['required']}"
            return self._error(reply, f"not enough credits{owed}; top up in the Apiframe console",
                               kind="credits", code=code)
        kind = self._kind_for_status(reply.status)
        if kind == "rate_limit":
            return self._error(reply, f"rate limited ({message}); slow down or retry later", kind=kind, code=code)
        if kind == "server":
            message = f"server error (HTTP {reply.status}): {message}; try again later"
        return self._error(reply, message, kind=kind, code=code)
