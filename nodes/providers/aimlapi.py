"""AI/ML API (aimlapi.com): HappyHorse 1.0 as model `alibaba/happyhorse-1-0` [S3: full OpenAPI schema].

Submit POST /v2/video/generations; poll GET /v2/video/generations?generation_id={id} (a query parameter, not a
path segment). No cancel API. Only 1.0 is documented, so 1.1 is not offered here.

The mode is implied by the media fields: none = t2v, `image_url` = i2v, `reference_image_urls` = r2v,
`video_url` (+ up to 5 `reference_image_urls`) = edit. Hosted defaults differ from DashScope's (resolution
1080p, duration 10, watermark false), so resolution, duration and watermark are always sent explicitly.
`duration` is sent as an integer as the schema types it (the docs' own examples send strings like "7"; the host
takes both). The host may answer numbers as strings, so every number read from a reply goes through `_number`.
`prompt` is required in every mode (the schema's `required: [model, prompt]`), image-to-video included: an empty
one is refused before sending (caps.i2v_prompt_required).
Cost: the poll reply documents only `meta.usage.credits_used` [S3: the GET schema; `usd_spent` is in the POST
reply's schema only, where nothing has been spent yet]. A finished job's cost is those credits at AI/ML API's
published rate, 1 USD = 2,000,000 credits (USD_PER_CREDIT) [E: docs.aimlapi.com FAQ "How can I track my funds?"];
no per-second HappyHorse rate is published, so estimates say the price is unknown.

Undocumented ([U]) and guessed here, each one constant below:
  PROMPT_MAX_CHARS - the prompt limit (the model's own 5000 / 2500 CJK is assumed).
  Data URIs inside `reference_image_urls` are assumed to work like they do for `image_url` / `video_url`
  (the schema calls them "image URLs"); see REFERENCES_TAKE_DATA_URI.
"""
from __future__ import annotations

from typing import Any

from ..engine.capabilities import RATIOS_10, ProviderCaps, VersionCaps
from ..engine.errors import ProviderError
from ..engine.http import HttpCall, HttpReply
from ..engine.pricing import PriceTable
from ..engine.request import GenerationRequest
from .base import JobStatus, MediaRef, ProviderAdapter, body_dict, check_task_id

MODEL = "alibaba/happyhorse-1-0"
GENERATIONS_PATH = "/v2/video/generations"

# "$1 USD = 2,000,000 credits" [E: docs.aimlapi.com/faq/how-can-i-track-my-funds].
USD_PER_CREDIT = 1 / 2_000_000
# [U] guess: AI/ML API documents no prompt limit; the model's own (5000 non-CJK / 2500 CJK) is assumed.
PROMPT_MAX_CHARS = 5000
# [U] guess: `reference_image_urls` takes data URIs like `image_url` does. If the host refuses them, set this
# to False: the engine then asks for public URLs (or an upload bucket) for every input.
REFERENCES_TAKE_DATA_URI = True

STATES = {"queued": "queued", "generating": "running", "completed": "succeeded", "error": "failed"}

# Which request field carries each canonical media role.
MEDIA_FIELDS = {"first_frame": "image_url", "video": "video_url"}
REFERENCES_FIELD = "reference_image_urls"

CAPS = ProviderCaps(
    name="aimlapi",
    display_name="AI/ML API",
    key_env="AIMLAPI_API_KEY",
    versions={"1.0": VersionCaps(modes=("t2v", "i2v", "r2v", "edit"), aspect_ratios=RATIOS_10)},
    prompt_max_chars=PROMPT_MAX_CHARS,
    i2v_prompt_required=True,           # the schema requires `prompt` in every mode
    accepts_data_uri=REFERENCES_TAKE_DATA_URI,
    supports_seed=True,
    supports_watermark=True,
    supports_cancel=False,
    notes="HappyHorse 1.0 only; takes URLs or data URIs; cost read from each job's credits_used",
)

PRICES = PriceTable(
    usd_per_second={("1.0", "720p"): None, ("1.0", "1080p"): None},
    usd_per_credit=USD_PER_CREDIT,
    source="AI/ML API publishes no HappyHorse per-second rate in its API docs; the charge is read from each "
           "finished job (meta.usage.credits_used, 2,000,000 credits = 1 USD)",
)


def _number(value: Any) -> float | None:
    """A number the host may send as 0.42, "0.42" or null."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


class AimlApiAdapter(ProviderAdapter):
    name = "aimlapi"
    caps = CAPS
    prices = PRICES
    default_base_url = "https://api.aimlapi.com"
    poll_min_s = 5.0
    poll_max_s = 15.0          # the docs' own examples poll every 15 s

    def submit_call(self, req: GenerationRequest, media: list[MediaRef]) -> HttpCall:
        body: dict[str, Any] = {"model": MODEL, "prompt": req.prompt}   # prompt is required in every mode
        refs = [m.url for m in media if m.role == "reference_image"]
        for m in media:
            if m.role in MEDIA_FIELDS:
                body[MEDIA_FIELDS[m.role]] = m.url
        if refs:
            body[REFERENCES_FIELD] = refs
        if req.effective_aspect_ratio is not None:
            body["aspect_ratio"] = req.effective_aspect_ratio
        body["resolution"] = req.resolution
        if req.effective_duration_s is not None:      # the host ignores duration when a video is given
            body["duration"] = req.effective_duration_s
        if req.mode == "edit":
            body["audio_setting"] = req.audio_setting or "auto"
        if req.seed is not None:
            body["seed"] = req.seed
        body["watermark"] = bool(req.watermark)
        return HttpCall("POST", GENERATIONS_PATH, json=body)

    def parse_submit(self, reply: HttpReply) -> str:
        return self.task_id(reply, body_dict(reply).get("id"), "no id")

    def poll_call(self, task_id: str) -> HttpCall:
        return HttpCall("GET", GENERATIONS_PATH, params={"generation_id": check_task_id(task_id)})

    def parse_poll(self, reply: HttpReply) -> JobStatus:
        body = body_dict(reply)
        raw = str(body.get("status", ""))
        state = self.job_state(reply, raw, STATES, "status")
        video = body.get("video") if isinstance(body.get("video"), dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
        usage = meta.get("usage") if isinstance(meta.get("usage"), dict) else None
        credits = _number(usage.get("credits_used")) if usage else None
        return JobStatus(state=state, raw_state=raw, video_url=video.get("url") or None,
                         error_code=str(error.get("name") or ""), error_message=str(error.get("message") or ""),
                         cost_usd=round(credits * USD_PER_CREDIT, 6) if credits is not None else None, usage=usage)

    def map_error(self, reply: HttpReply) -> ProviderError:
        body = body_dict(reply)
        message = body.get("message")
        if isinstance(message, list):          # validation errors arrive as a list of messages
            message = "; ".join(str(m) for m in message)
        message = str(message or reply.body or f"HTTP {reply.status}")
        if reply.status == 401:
            return self._error(reply, self.auth_message(), kind="auth")
        if reply.status == 403:
            return self._error(reply, f"the account has no credits left ({message}); top it up at "
                                      f"aimlapi.com", kind="credits")
        kind = self._kind_for_status(reply.status)
        if kind == "rate_limit":
            # The host sends no Retry-After: the engine backs off on its own.
            return self._error(reply, f"rate limited ({message}); slow down or retry later", kind=kind)
        if kind == "server":
            return self._error(reply, f"server error (HTTP {reply.status}: {message}); try again later", kind=kind)
        return self._error(reply, message, kind=kind)
