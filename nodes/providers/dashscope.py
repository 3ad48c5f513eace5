"""Alibaba DashScope (Model Studio), the origin API of HappyHorse.

Video edit (happyhorse-1.0-video-edit) follows its own page [E: Model Studio "HappyHorse video editing API
reference"]: the source video's shape must be 1:2.5..2.5:1, edit reference images need a short side >= 300 px
and <= 10 MB (not reference-to-video's 400 px), and `parameters.ratio` is optional - ComfyUI's own HappyHorse
edit node sends it ("if not changed, approximates the input video ratio") [E: docs.comfy.org
HappyHorseVideoEditApi]. Unset here means nothing is sent and the source keeps its shape.

Submit POST /api/v1/services/aigc/video-generation/video-synthesis (X-DashScope-Async: enable required),
poll GET /api/v1/tasks/{id}, cancel POST /api/v1/tasks/{id}/cancel (only while PENDING).
Polling [E: Model Studio "Asynchronous task management API", alibabacloud.com/help/en/model-studio/
manage-asynchronous-tasks]: the task query is limited to 20 QPS per Alibaba Cloud account (all its keys
together) - poll_max_qps; its reply carries output.submit_time and output.scheduled_time ("when it started
running", e.g. "2023-12-20 21:36:39.009"), whose difference is the time the job waited (JobStatus.queued_s,
by the host's clock, so no clock skew). The video pages advise polling every 15 s (poll_max_s); no per-task
minimum is documented (poll_min_s is ours).
Temporary upload store: GET /api/v1/uploads?action=getPolicy&model=..., then a signed form POST (no key) to the
policy's OSS host; the submit then names the file oss://{key} with X-DashScope-OssResourceResolve: enable.
Regions (Singapore, Beijing, Virginia, Frankfurt, workspace domains) are in dashscope_regions.py: one adapter per
region, with that region's prices, store and the region-locked-key message.
Task list: GET /api/v1/tasks?start_time=&end_time=&model_name=&page_no=&page_size= lists the account's tasks
[E: Model Studio "Asynchronous task management API" (batch query); the query names as dashscope-sdk-python's
Tasks.list sends them, times as YYYYMMDDhhmmss]. Undocumented here ([U], one constant each): the time zone of
start_time / end_time (LIST_TZ_HOURS; the window is widened by LIST_SLACK_S both ways so either reading finds
the task, and the exact match is made on each entry's gmt_create, epoch milliseconds) and the page size cap
(LIST_PAGE_SIZE). A succeeded task's detail carries `orig_prompt`, which confirms a match.

Concurrency: Model Studio limits each model per Alibaba Cloud account (all keys and workspaces together):
requests per second and, for its video models, task-submission RPS and tasks at once, refused with 429
Throttling [E: Model Studio "Rate limits" page; the Wan video API pages' "RPS for task submission" / "Number of
concurrent tasks"]. HappyHorse's numbers are not published, so nothing is capped here: a refused submit is
waited on and sent again (engine/submit.py), which is all one process could do about an account-wide limit.
"""
from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass
from datetime import datetime

from ..engine.capabilities import RATIOS_10, RATIOS_11, ProviderCaps, VersionCaps
from ..engine.errors import ProviderError
from ..engine.http import HttpCall, HttpReply
from ..engine.pricing import PriceTable
from ..engine.promptcheck import CHARACTER_STYLE
from ..engine.request import GenerationRequest
from ..engine.uploads import StoreForm
from .base import JobStatus, ListedTask, MediaRef, ProviderAdapter, body_dict, require, task_id_path
from .dashscope_regions import DEFAULT_REGION, REGION_ENV, Region, unknown_prices

MODEL_SUFFIX = {"t2v": "t2v", "i2v": "i2v", "r2v": "r2v", "edit": "video-edit"}

STATES = {"PENDING": "queued", "RUNNING": "running", "SUCCEEDED": "succeeded", "FAILED": "failed",
          "CANCELED": "canceled", "UNKNOWN": "unknown"}

# [U] guess: the task list reads start_time / end_time as Beijing time (UTC+8); LIST_SLACK_S covers UTC too.
LIST_TZ_HOURS = 8
LIST_SLACK_S = 9 * 3600
LIST_PAGE_SIZE = 100

# Files in the temporary store live 48 h, and only for the model named in getPolicy.
STORE_LIFETIME_S = 48 * 3600
POLICY_FIELDS = ("policy", "signature", "upload_dir", "upload_host", "oss_access_key_id", "x_oss_object_acl",
                 "x_oss_forbid_overwrite")


@dataclass(frozen=True)
class UploadPolicy:
    """getPolicy's signed permission to put files under upload_dir on upload_host (DashScope's OSS bucket)."""

    policy: str
    signature: str
    upload_dir: str
    upload_host: str
    access_key_id: str
    object_acl: str
    forbid_overwrite: str
    max_bytes: int | None


CAPS = ProviderCaps(
    name="dashscope",
    display_name="DashScope",
    key_env="DASHSCOPE_API_KEY",
    versions={
        "1.0": VersionCaps(modes=("t2v", "i2v", "r2v", "edit"), aspect_ratios=RATIOS_10, edit_ratio=True),
        "1.1": VersionCaps(modes=("t2v", "i2v", "r2v"), aspect_ratios=RATIOS_11),
    },
    prompt_max_chars=5000,
    accepts_data_uri=True,
    has_temp_store=True,
    supports_cancel=True,
    reference_token_style=CHARACTER_STYLE,  # its r2v examples write character1, character2, ... [E]
    notes="origin API; keys are region-locked (Singapore default; set HAPPYHORSE_DASHSCOPE_REGION)",
)
# Regions without the temporary store, and endpoints that are not Alibaba's (a proxy: no store assumed).
NO_STORE_CAPS = dataclasses.replace(CAPS, has_temp_store=False)
OTHER_HOST_PRICES = unknown_prices("behind a custom endpoint (region unknown)")


class DashScopeAdapter(ProviderAdapter):
    """One per region: region None is an endpoint that is not one of Alibaba's (a proxy)."""

    name = "dashscope"
    poll_min_s = 0.5                    # one job's share of the 20 QPS: 2 per second leaves room for 10 at once
    poll_max_s = 15.0                   # the docs' advised interval
    poll_max_qps = 20.0                 # the task query's documented per-account limit
    lists_tasks = True

    def __init__(self, region: Region | None = DEFAULT_REGION):
        self.region = region

    # Properties, so a subclass (the simulator, a test's variant) can still set its own as class attributes.
    @property
    def caps(self) -> ProviderCaps:
        return CAPS if self.region is not None and self.region.temp_store else NO_STORE_CAPS

    @property
    def prices(self) -> PriceTable:
        return self.region.prices if self.region is not None else OTHER_HOST_PRICES

    @property
    def default_base_url(self) -> str:
        return (self.region or DEFAULT_REGION).legacy_url or DEFAULT_REGION.legacy_url

    def auth_message(self) -> str:
        where = f"the {self.region.title} endpoint" if self.region is not None else "this endpoint"
        return (f"the API key was rejected by {where}; check {self.caps.key_env}. DashScope keys are "
                f"region-locked: a key made in another region (Singapore, Beijing, Virginia, Frankfurt) fails "
                f"here, so set {REGION_ENV} (or region = \"...\" under [dashscope] in the config file) to the "
                f"key's region")

    def model_id(self, req: GenerationRequest) -> str:
        return f"happyhorse-{req.version}-{MODEL_SUFFIX[req.mode]}"

    def submit_call(self, req: GenerationRequest, media: list[MediaRef]) -> HttpCall:
        inp: dict = {"prompt": req.prompt}
        if media:
            inp["media"] = [{"type": m.role, "url": m.url} for m in media]
        params: dict = {"resolution": req.resolution.upper(), "watermark": bool(req.watermark)}
        if req.effective_aspect_ratio is not None:
            params["ratio"] = req.effective_aspect_ratio
        if req.effective_duration_s is not None:
            params["duration"] = req.effective_duration_s
        if req.seed is not None:
            params["seed"] = req.seed
        if req.mode == "edit":
            params["audio_setting"] = req.audio_setting or "auto"
        headers = {"X-DashScope-Async": "enable"}
        if any(m.url.startswith("oss://") for m in media):
            headers["X-DashScope-OssResourceResolve"] = "enable"
        return HttpCall("POST", "/api/v1/services/aigc/video-generation/video-synthesis",
                        json={"model": self.model_id(req), "input": inp, "parameters": params}, headers=headers)

    def parse_submit(self, reply: HttpReply) -> str:
        out = body_dict(reply).get("output")
        return self.task_id(reply, out.get("task_id") if isinstance(out, dict) else None, "no output.task_id")

    def poll_call(self, task_id: str) -> HttpCall:
        return HttpCall("GET", f"/api/v1/tasks/{task_id_path(task_id)}")

    def cancel_call(self, task_id: str) -> HttpCall | None:
        return HttpCall("POST", f"/api/v1/tasks/{task_id_path(task_id)}/cancel")

    def list_tasks_call(self, req: GenerationRequest, since: float, until: float, page: int) -> HttpCall | None:
        def stamp(t: float) -> str:
            return time.strftime("%Y%m%d%H%M%S", time.gmtime(t + LIST_TZ_HOURS * 3600))

        return HttpCall("GET", "/api/v1/tasks", params={
            "start_time": stamp(since - LIST_SLACK_S), "end_time": stamp(until + LIST_SLACK_S),
            "model_name": self.model_id(req), "page_no": str(page), "page_size": str(LIST_PAGE_SIZE)})

    def parse_task_list(self, reply: HttpReply) -> tuple[list[ListedTask], bool]:
        body = body_dict(reply)
        data = body.get("data")
        require(isinstance(data, list), self, reply, "task list without data")
        tasks = []
        for item in data:
            if isinstance(item, dict) and item.get("task_id"):
                created = item.get("gmt_create")
                tasks.append(ListedTask(str(item["task_id"]),
                                        float(created) / 1000 if isinstance(created, (int, float)) else None))
        page, pages = body.get("page_no"), body.get("total_page")
        more = isinstance(page, int) and isinstance(pages, int) and page < pages
        return tasks, more

    def parse_poll(self, reply: HttpReply) -> JobStatus:
        body = body_dict(reply)
        out = body.get("output") or {}
        raw = str(out.get("task_status", ""))
        state = self.job_state(reply, raw, STATES, "output.task_status")
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else None
        billed = None
        if usage:
            # Edit bills input + output seconds; generation bills the output seconds.
            parts = [usage.get("input_video_duration"), usage.get("output_video_duration")]
            if any(p is not None for p in parts):
                billed = float(sum(float(p) for p in parts if p is not None))
            elif usage.get("duration") is not None:
                billed = float(usage["duration"])
        return JobStatus(state=state, raw_state=raw, video_url=out.get("video_url"),
                         error_code=str(out.get("code") or ""), error_message=str(out.get("message") or ""),
                         billed_seconds=billed, usage=usage,
                         prompt=out.get("orig_prompt") if isinstance(out.get("orig_prompt"), str) else None,
                         queued_s=_seconds_between(out.get("submit_time"), out.get("scheduled_time")))

    # --- temporary upload store -------------------------------------------------------------------
    def upload_policy_call(self, req: GenerationRequest) -> HttpCall:
        return HttpCall("GET", "/api/v1/uploads", params={"action": "getPolicy", "model": self.model_id(req)})

    def parse_upload_policy(self, reply: HttpReply) -> UploadPolicy:
        data = body_dict(reply).get("data")
        require(isinstance(data, dict) and all(data.get(k) not in (None, "") for k in POLICY_FIELDS), self, reply,
                "getPolicy data without " + "/".join(POLICY_FIELDS))
        size_mb = data.get("max_file_size_mb")
        return UploadPolicy(policy=str(data["policy"]), signature=str(data["signature"]),
                            upload_dir=str(data["upload_dir"]).rstrip("/"), upload_host=str(data["upload_host"]),
                            access_key_id=str(data["oss_access_key_id"]), object_acl=str(data["x_oss_object_acl"]),
                            forbid_overwrite=str(data["x_oss_forbid_overwrite"]),
                            max_bytes=int(float(size_mb) * 1024 * 1024) if size_mb else None)

    def upload_form(self, policy: UploadPolicy, filename: str) -> StoreForm:
        """The OSS PostObject form: the signed fields, then the file as the LAST part (OSS ignores what
        follows it), sent without the DashScope key."""
        key = f"{policy.upload_dir}/{filename}"
        return StoreForm(upload_url=policy.upload_host,
                         fields=(("OSSAccessKeyId", policy.access_key_id), ("Signature", policy.signature),
                                 ("policy", policy.policy), ("key", key), ("x-oss-object-acl", policy.object_acl),
                                 ("x-oss-forbid-overwrite", policy.forbid_overwrite),
                                 ("success_action_status", "200")),
                         file_field="file", media_url=f"oss://{key}", lifetime_s=STORE_LIFETIME_S,
                         max_bytes=policy.max_bytes, ok_status=200)

    def map_upload_error(self, reply: HttpReply) -> ProviderError:
        """OSS answers in XML: <Error><Code>...</Code><Message>...</Message></Error>."""
        text = reply.body if isinstance(reply.body, str) else ""
        code, message = _xml_text(text, "Code"), _xml_text(text, "Message")
        return self._error(reply, f"the upload store refused the file ({code or f'HTTP {reply.status}'}"
                                  f"{': ' + message if message else ''}); nothing was submitted",
                           kind=self._kind_for_status(reply.status), code=code)

    def map_error(self, reply: HttpReply) -> ProviderError:
        body = body_dict(reply)
        code = str(body.get("code") or "")
        message = str(body.get("message") or reply.body or f"HTTP {reply.status}")
        if reply.status == 401 or code == "InvalidApiKey":
            return self._error(reply, self.auth_message(), kind="auth", code=code)
        if code == "Arrearage":
            return self._error(reply, "the account has no balance (Arrearage); top it up in the Model Studio "
                                      "console", kind="credits", code=code)
        if reply.status == 403:
            where = f"the {self.region.title} region" if self.region is not None else "this region"
            return self._error(reply, f"access denied ({message}); this key may not be allowed to use "
                                      f"HappyHorse in {where} (keys, models and endpoints are region-locked)",
                               kind="auth", code=code)
        if code == "DataInspectionFailed":
            return self._error(reply, f"the content was refused by moderation: {message}", kind="bad_request",
                               code=code)
        kind = self._kind_for_status(reply.status)
        if kind == "rate_limit":
            return self._error(reply, f"rate limited ({code or 'Throttling'}); slow down or retry later",
                               kind=kind, code=code)
        return self._error(reply, f"{code + ': ' if code else ''}{message}", kind=kind, code=code)


def _seconds_between(start, end) -> float | None:
    """end - start for two of the host's timestamps ("2023-12-20 21:36:31.896"); None if either is missing or
    unreadable (the polling then does without)."""
    try:
        a, b = (datetime.strptime(str(v), "%Y-%m-%d %H:%M:%S.%f") for v in (start, end))
    except (TypeError, ValueError):
        return None
    seconds = (b - a).total_seconds()
    return seconds if seconds >= 0 else None


def _xml_text(text: str, tag: str) -> str:
    match = re.search(f"<{tag}>(.*?)</{tag}>", text, re.S)
    return match.group(1).strip() if match else ""
