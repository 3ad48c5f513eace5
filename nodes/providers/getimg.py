"""getimg.ai: HappyHorse as model `happyhorse-1` [S0], OpenAI-style REST.

Submit POST /v2/videos/generations -> HTTP 202 {"id": "req-...", "status": "pending"} (any 2xx with an id is
taken as accepted: the job is paid for whatever the code); poll
GET /v2/videos/generations/{id} until `completed` (data[0].url) or `failed` (error.message). No cancel API.
Body: model, prompt (1-4096 characters, required in every mode), aspect_ratio, resolution, duration and
images [{url, role: first_frame | reference_image}] - public URLs only, so byte inputs need an upload bucket.
Resolution is always sent (hosts disagree on the default). HappyHorse always renders audio, so getimg's generic
`sound` switch is left out, as in getimg's own HappyHorse examples.

Decisions on contradictions and gaps:
  - Which HappyHorse release `happyhorse-1` is is not stated. Its price (0.14 / 0.24 USD/s) is DashScope's 1.0
    price (1.1 is 0.14 / 0.18) and its five ratios are 1.0's, so it is offered as version 1.0 (MODEL_IDS).
  - Image count: the request schema caps `images` at 8 [E]; the marketing page says "1 first frame + up to 9
    references" [S0]. The schema is what the API enforces, so r2v takes 1-8 references (R2V_MAX_REFS).
  - getimg has one word, `pending`, for both queued and running. It is read as queued (providers.md section 8),
    so a queue timeout applies to it; the running-time timeout never starts for getimg jobs.
  - seed and watermark are not request fields: a user-set seed is refused before sending, no watermark is sent.

Concurrency: there is a per-workspace cap on jobs at once, answered 429 `rate_limit` with Retry-After [E]; its
size is unpublished, so nothing is capped here: a submit over it is waited on and sent again (engine/submit.py).

Undocumented ([U]) and guessed here, each one constant below: MODEL_IDS (release, see above) and the no-credit
answer (CREDIT_CODES: HTTP 402 assumed).
"""
from __future__ import annotations

from typing import Any

from ..engine.capabilities import RATIOS_10, ProviderCaps, VersionCaps
from ..engine.errors import ProviderError
from ..engine.http import HttpCall, HttpReply
from ..engine.pricing import PriceTable
from ..engine.request import GenerationRequest
from .base import JobState, JobStatus, MediaRef, ProviderAdapter, body_dict, require, task_id_path

# [U] guess: `happyhorse-1` is taken to be HappyHorse 1.0 (1.0's price and ratios; see the docstring).
MODEL_IDS = {"1.0": "happyhorse-1"}
# The request schema's maxItems for `images` [E] (the marketing page's "up to 9" is not what the API enforces).
R2V_MAX_REFS = 8
# [U] guess: getimg documents 401 invalid_api_key and 429 rate_limit but not how a workspace without credits is
# refused; HTTP 402 or an error code naming credits/balance is read as "out of credits".
CREDIT_CODES = {"insufficient_credits", "insufficient_balance", "payment_required"}

STATES = {"pending": "queued", "completed": "succeeded", "failed": "failed"}

CAPS = ProviderCaps(
    name="getimg",
    display_name="getimg.ai",
    key_env="GETIMG_API_KEY",
    versions={"1.0": VersionCaps(modes=("t2v", "i2v", "r2v"), aspect_ratios=RATIOS_10, r2v_max_refs=R2V_MAX_REFS)},
    prompt_max_chars=4096,
    prompt_cjk_counts_double=False,     # getimg counts plain characters (1-4096)
    i2v_prompt_required=True,           # `prompt` 1-4096 characters in every mode: an empty one is refused here
    accepts_data_uri=False,
    supports_seed=False,
    supports_watermark=False,
    supports_cancel=False,
    notes="public URLs only (configure an upload bucket for local files); HappyHorse 1.0; no seed, no watermark",
)

PRICES = PriceTable(
    usd_per_second={("1.0", "720p"): 0.14, ("1.0", "1080p"): 0.24},
    source="getimg.ai HappyHorse 1 pricing page",
)


class GetimgAdapter(ProviderAdapter):
    name = "getimg"
    caps = CAPS
    prices = PRICES
    default_base_url = "https://api.getimg.ai"
    poll_min_s = 5.0                    # getimg's own SDK example polls every 5 s
    poll_max_s = 15.0

    def submit_call(self, req: GenerationRequest, media: list[MediaRef]) -> HttpCall:
        body: dict[str, Any] = {"model": MODEL_IDS[req.version], "prompt": req.prompt}
        if req.effective_aspect_ratio is not None:
            body["aspect_ratio"] = req.effective_aspect_ratio
        body["resolution"] = req.resolution
        body["duration"] = req.effective_duration_s
        if media:
            body["images"] = [{"url": m.url, "role": m.role} for m in media]
        return HttpCall("POST", "/v2/videos/generations", json=body)

    def parse_submit(self, reply: HttpReply) -> str:
        return self.task_id(reply, body_dict(reply).get("id"), "no id")

    def poll_call(self, task_id: str) -> HttpCall:
        return HttpCall("GET", f"/v2/videos/generations/{task_id_path(task_id)}")

    def parse_poll(self, reply: HttpReply) -> JobStatus:
        body = body_dict(reply)
        raw = str(body.get("status", ""))
        state = self.job_state(reply, raw, STATES, "status")
        if state == JobState.UNRECOGNIZED:
            return JobStatus(state=state, raw_state=raw)
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else None
        if raw == "failed":
            err = body.get("error") if isinstance(body.get("error"), dict) else {}
            return JobStatus(state="failed", raw_state=raw, error_code=str(err.get("code") or ""),
                             error_message=str(err.get("message") or ""), usage=usage)
        if raw == "pending":
            return JobStatus(state="queued", raw_state=raw)
        items = body.get("data")
        require(isinstance(items, list) and bool(items) and isinstance(items[0], dict), self, reply, "no data[0]")
        billed = cost = None
        if usage:
            if usage.get("billable_unit", "video_second") == "video_second" and usage.get("quantity") is not None:
                billed = float(usage["quantity"])
            if usage.get("total_cost") is not None:
                cost = float(usage["total_cost"])
        return JobStatus(state="succeeded", raw_state=raw, video_url=items[0].get("url"), billed_seconds=billed,
                         cost_usd=cost, usage=usage)

    def map_error(self, reply: HttpReply) -> ProviderError:
        err = body_dict(reply).get("error")
        err = err if isinstance(err, dict) else {}
        code = str(err.get("code") or "")
        message = str(err.get("message") or reply.body or f"HTTP {reply.status}")
        if reply.status in (401, 403) or code == "invalid_api_key":
            return self._error(reply, self.auth_message(), kind="auth", code=code)
        if reply.status == 402 or code in CREDIT_CODES:
            return self._error(reply, f"the workspace is out of credits ({message}); top up in the getimg.ai "
                                      f"dashboard", kind="credits", code=code)
        kind = self._kind_for_status(reply.status)
        if kind == "rate_limit":
            return self._error(reply, f"rate limited or at the workspace's limit of jobs in flight ({message}); "
                                      f"wait and retry", kind=kind, code=code)
        if kind == "server":
            return self._error(reply, f"server error (HTTP {reply.status}): {message}; try again later", kind=kind,
                               code=code)
        param = f" (parameter: {err['param']})" if err.get("param") else ""
        return self._error(reply, f"{message}{param}", kind=kind, code=code)
