"""reAPI (reapi.ai): HappyHorse 1.1 as `happyhorse-1-1` [S4] and 1.0 as `happyhorse-1.0` [E: reAPI's 1.0 page].

Submit POST /api/v1/videos/generations; poll GET /api/v1/tasks/{id} (free; statuses processing | completed |
failed - there is no separate queued state). No cancel API.

The two versions name their media fields differently, and `image_urls` means opposite things:
  1.1: `image_urls` = [first frame] (exactly one) selects i2v; `reference_image_urls` (1-9) selects r2v;
       the two are mutually exclusive (400 / 20002). Resolution values "720p" / "1080p", default 720p.
       The ratio is `aspect_ratio` (t2v / r2v). Prompt 5000 non-CJK / 2500 CJK characters [S4].
  1.0: `first_frame_image` = the first frame, `image_urls` = REFERENCE images (1-9; 0-5 with a video),
       `video_url` + `audio_setting` for edit. Resolution values "720P" / "1080P", default 1080P; `watermark`
       (default off) exists here only. The ratio is `"size": "16:9"`, not `aspect_ratio`, and is ignored in
       i2v and edit [E: reAPI's happyhorse-1.0 model page and its own request example, whose routing rule
       "video_url > first_frame_image > image_urls > prompt-only" this follows]. Prompt "<= 2500 chars,
       optional in image-to-video mode" [E: same page].
Media must be public http(s) URLs: data: URIs are rejected, so byte inputs need an upload bucket.
Resolution is always sent (defaults differ by version and host), watermark explicitly on 1.0. Seed is not a 1.1
parameter; the capability table is per host, so a user-set seed is refused on both versions rather than dropped.
Price: credits = ceil(usd_per_s x seconds x 1000), 1 credit = 0.001 USD; 1.0 is 0.1625 / 0.2875 USD/s [E],
1.1's rate is not published in the docs we have [U], so estimates for 1.1 say the price is unknown.
Edit: "the routing mode does not change the rate" [S4]; whether the edit's input seconds are billed as well is
not said, so an edit is estimated on its output seconds and the breakdown marks the input part as uncertain.

Undocumented ([U]) and guessed here, each one constant below:
  FIELDS_10 - `first_frame_image` is taken to be one URL string (the page names it, shows no schema).
  SUBMIT_ID_KEYS - where the submit reply puts the task id ("returns a task id", shape not shown).
"""
from __future__ import annotations

from typing import Any

from ..engine.capabilities import RATIOS_10, RATIOS_11, ImageLimits, ProviderCaps, VersionCaps
from ..engine.errors import ProviderError
from ..engine.http import HttpCall, HttpReply
from ..engine.pricing import PriceTable
from ..engine.promptcheck import IMAGE_STYLE
from ..engine.request import GenerationRequest
from .base import JobStatus, MediaRef, ProviderAdapter, body_dict, task_id_path

# 1.0's id is spelled with a dot on reAPI's model page and docs menu (providers.md has `happyhorse-1-0`).
MODELS = {"1.0": "happyhorse-1.0", "1.1": "happyhorse-1-1"}
# 1.0's page writes 720P / 1080P (default 1080P), 1.1's docs 720p / 1080p (default 720p).
RESOLUTIONS = {"1.0": {"720p": "720P", "1080p": "1080P"}, "1.1": {"720p": "720p", "1080p": "1080p"}}

# Media role -> (request field, sent as a list?).
FIELDS_11 = {"first_frame": ("image_urls", True), "reference_image": ("reference_image_urls", True)}
# [U] guess: names from reAPI's 1.0 page [E], which shows no schema; `first_frame_image` is taken to be one URL.
FIELDS_10 = {"first_frame": ("first_frame_image", False), "reference_image": ("image_urls", True),
             "video": ("video_url", False)}
FIELDS = {"1.0": FIELDS_10, "1.1": FIELDS_11}
# The ratio's field per version (t2v / r2v only): 1.0 `size` [E: reAPI 1.0 page], 1.1 `aspect_ratio` [S4].
RATIO_FIELD = {"1.0": "size", "1.1": "aspect_ratio"}

# [U] guess: "submitting returns a task id"; the reply is taken to be the task object (`id`), `task_id` tried too.
SUBMIT_ID_KEYS = ("id", "task_id")
# "The routing mode does not change the rate" [S4]: the output seconds are what is documented; whether an edit's
# input seconds are billed too is not, and the estimate says so.
EDIT_BILLING = "output_input_uncertain"

STATES = {"processing": "running", "completed": "succeeded", "failed": "failed"}
AUTH_CODES = {"10001", "10002", "10003", "10004", "10005"}

CAPS = ProviderCaps(
    name="reapi",
    display_name="reAPI",
    key_env="REAPI_API_KEY",
    versions={
        # 1.0: "<= 2500 chars" [E: reAPI 1.0 page], whatever the script.
        "1.0": VersionCaps(modes=("t2v", "i2v", "r2v", "edit"), aspect_ratios=RATIOS_10, seed=True, watermark=True,
                           prompt_max_chars=2500, prompt_cjk_counts_double=False),
        "1.1": VersionCaps(modes=("t2v", "i2v", "r2v"), aspect_ratios=RATIOS_11, seed=False, watermark=False),
    },
    prompt_max_chars=5000,              # 1.1: 5000 non-CJK / 2500 CJK; the host truncates, we refuse instead
    accepts_data_uri=False,
    supports_seed=False,                # per version above: 1.0 documents seed and watermark, 1.1 neither
    supports_watermark=False,
    supports_cancel=False,
    image_limits=ImageLimits(formats=("JPEG", "PNG", "WEBP")),
    reference_token_style=IMAGE_STYLE,  # [S4] (1.1): "reference images with [Image 1]"; the 1.0 page shows none
    notes="public URLs only (configure an upload bucket for local files); seed and watermark on 1.0 only",
)

PRICES = PriceTable(
    usd_per_second={("1.0", "720p"): 0.1625, ("1.0", "1080p"): 0.2875,
                    ("1.1", "720p"): None, ("1.1", "1080p"): None},
    edit_billing=EDIT_BILLING,
    credits_rule="ceil_usd_x1000",
    source="reAPI's 1.0 model page; 1.1 rates are not published in its API docs",
)


class ReApiAdapter(ProviderAdapter):
    name = "reapi"
    caps = CAPS
    prices = PRICES
    default_base_url = "https://reapi.ai"
    poll_min_s = 3.0

    def submit_call(self, req: GenerationRequest, media: list[MediaRef]) -> HttpCall:
        body: dict[str, Any] = {"model": MODELS[req.version]}
        if req.prompt or req.mode != "i2v":          # optional in i2v only; never sent empty
            body["prompt"] = req.prompt
        fields = FIELDS[req.version]
        for m in media:
            field, as_list = fields[m.role]
            if as_list:
                body.setdefault(field, []).append(m.url)
            else:
                body[field] = m.url
        body["resolution"] = RESOLUTIONS[req.version][req.resolution]
        if req.effective_aspect_ratio is not None and req.mode in ("t2v", "r2v"):
            body[RATIO_FIELD[req.version]] = req.effective_aspect_ratio
        if req.effective_duration_s is not None:
            body["duration"] = req.effective_duration_s
        if req.mode == "edit":
            body["audio_setting"] = req.audio_setting or "auto"
        if req.version == "1.0":          # 1.1 documents neither watermark nor seed
            body["watermark"] = bool(req.watermark)
            if req.seed is not None:
                body["seed"] = req.seed
        return HttpCall("POST", "/api/v1/videos/generations", json=body)

    def parse_submit(self, reply: HttpReply) -> str:
        body = body_dict(reply)
        return self.task_id(reply, next((body[k] for k in SUBMIT_ID_KEYS if body.get(k)), None), "no task id")

    def poll_call(self, task_id: str) -> HttpCall:
        return HttpCall("GET", f"/api/v1/tasks/{task_id_path(task_id)}")

    def parse_poll(self, reply: HttpReply) -> JobStatus:
        body = body_dict(reply)
        raw = str(body.get("status", ""))
        state = self.job_state(reply, raw, STATES, "status")
        output = body.get("output") if isinstance(body.get("output"), dict) else {}
        urls = output.get("video_urls") if isinstance(output.get("video_urls"), list) else []
        code, message = _error_fields(body.get("error"))
        return JobStatus(state=state, raw_state=raw, video_url=urls[0] if urls else None,
                         error_code=code, error_message=message)

    def map_error(self, reply: HttpReply) -> ProviderError:
        code, message = _error_fields(body_dict(reply).get("error"))
        message = message or f"HTTP {reply.status}"
        if reply.status == 401 or code in AUTH_CODES:
            return self._error(reply, self.auth_message(), kind="auth", code=code)
        if reply.status == 402 or code == "30001":
            return self._error(reply, f"not enough credits ({message}); top up at reapi.ai", kind="credits",
                               code=code)
        if reply.status == 429 or code == "50001":
            return self._error(reply, f"rate limited ({message}); slow down or retry later", kind="rate_limit",
                               code=code)
        kind = self._kind_for_status(reply.status)
        detail = f"{message}{f' (code {code})' if code else ''}"
        if kind == "server":
            return self._error(reply, f"server error (HTTP {reply.status}: {detail}); try again later", kind=kind,
                               code=code)
        return self._error(reply, detail, kind=kind, code=code)


def _error_fields(error: Any) -> tuple[str, str]:
    """(code, message) from reAPI's `error`: an object {code, message, request_id}, or a bare string."""
    if isinstance(error, dict):
        return str(error.get("code") or ""), str(error.get("message") or "")
    return "", str(error or "")
