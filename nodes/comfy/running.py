"""What a generation node or Collect Job does when it runs: build the request, run the job through the engine,
turn the result into the node's outputs. Loaded on a node's first run, not when ComfyUI loads the pack
(generation.py defines the nodes and keeps start-up light)."""
from __future__ import annotations

import asyncio
import io as stdio
import logging
import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch
from comfy_api.latest import InputImpl, Types, io

from ..engine.budget import SpendGuard
from ..engine.errors import HappyHorseError, ValidationError
from ..engine.imageprep import apply_fixes, fit_all, with_fit_hint
from ..engine.ledger import Ledger
from ..engine.promptcheck import reference_warnings
from ..engine.request import MediaInput
from ..engine.routing import AUTO as AUTO_PROVIDER
from ..engine.routing import plan_route, run_auto
from ..engine.runner import JobResult, JobRunner, RunOptions, check_request
from ..providers.registry import all_caps, configured, get_adapter, resolve_endpoint, resolve_for_task
from . import specs
from .host import NodeProgress, ledger_path, output_dir, run_interruptibly
from .params import Built, build_request, slot_order
from .tensors import (FrameCollector, FrameLimits, audio_from_video, batch_pictures, decode_video_frames,
                      frames_to_mp4, image_to_media, pictures_to_media)
from .wiring import Wanted

if TYPE_CHECKING:
    from .generation import ResultNode

log = logging.getLogger("happyhorse")


@dataclass(frozen=True)
class RunSettings:
    """The advanced widgets every result-producing node shares (see specs.FORCE_NEW, TIMEOUT, frame_fields,
    MAX_USD; Collect Job has no max_usd: it never pays)."""

    force_new: bool = False
    timeout_s: int = 1800
    limits: FrameLimits = field(default_factory=FrameLimits)
    max_usd: float = 0.0                        # 0: no per-run limit (the config's [budget] still applies)

    @classmethod
    def read(cls, values: dict[str, Any]) -> RunSettings:
        return cls(force_new=bool(values.get("force_new", False)), timeout_s=int(values.get("timeout_s", 1800)),
                   max_usd=float(values.get("max_usd", 0.0)),
                   limits=FrameLimits(max_frames=int(values.get("max_frames", 0)),
                                      frame_step=int(values.get("frame_step", 1)),
                                      max_side=int(values.get("max_side", 0)),
                                      max_mb=int(values.get("frames_max_mb", specs.FRAMES_MAX_MB_DEFAULT))))


# With force_new, each run of a node pays for a new job. A run caused only by a change in which outputs are
# linked (see ResultNode.fingerprint_inputs) must not pay again: per node, the last request and its video.
_last_video: dict[str, tuple[str, JobResult]] = {}


async def generate(cls: type[ResultNode], built: Built, settings: RunSettings, fit: str = "off") -> io.NodeOutput:
    # Bad input is refused here, before a key is looked up or anything is sent. With provider auto the ranking
    # checks the request against every host and keeps those with a key that take it.
    plan = None
    if built.provider == AUTO_PROVIDER:
        if fit != "off":
            raise HappyHorseError("fit_inputs repairs inputs for one host's limits: pick a provider, or set "
                                  "fit_inputs to off with provider auto")
        plan = await asyncio.to_thread(lambda: plan_route(built.request, seed_is_optional=True).require())
        provider, req = plan.chosen.provider, plan.chosen.request
    else:
        provider = built.provider
        adapter = await asyncio.to_thread(lambda: configured(provider)[0])   # a DashScope region's store, prices
        if fit != "off":
            built = await asyncio.to_thread(fit_inputs, built, adapter.caps, fit)
        try:
            req, _ = await asyncio.to_thread(check_request, built.request, adapter, all_caps())
        except ValidationError as exc:
            if fit != "off":
                raise
            raise with_fit_hint(exc, "fit_inputs", "set it to crop or pad to repair the inputs above; inputs "
                                                   "within the limits are not touched") from None
    caps = get_adapter(provider).caps
    guard = await asyncio.to_thread(SpendGuard.load, settings.max_usd)     # reads [budget] from the config
    notes = (*built.notes, *([plan.why()] if plan else []),
             *(f"Warning: {w}" for w in reference_warnings(req, caps)))
    progress = NodeProgress(cls.hidden.unique_id, caps.display_name, notes, provider)
    node_key, fingerprint = str(cls.hidden.unique_id), await asyncio.to_thread(req.fingerprint)
    wanted = cls.wanted()
    collector = FrameCollector(settings.limits) if wanted.frames else None
    last = _last_video.get(node_key)
    if settings.force_new and last is not None and last[0] == fingerprint and os.path.isfile(last[1].path):
        result = replace(last[1], origin="reused", billed_seconds=0.0, cost_usd=0.0)
    else:
        ledger = await asyncio.to_thread(Ledger, ledger_path())
        opts = RunOptions(out_dir=output_dir(), timeout_s=float(settings.timeout_s), upload=built.upload,
                          force_new=settings.force_new, frames=collector, spend_guard=guard)
        if plan is not None:
            def attempt_at(cand) -> None:
                progress.provider, progress.provider_id = cand.display_name, cand.provider

            def failed_over(line: str) -> None:
                progress.notes = (*progress.notes, line)
            result = await run_interruptibly(lambda cancelled: run_auto(
                plan, opts, ledger=ledger, on_progress=progress, is_cancelled=cancelled, on_event=failed_over,
                on_attempt=attempt_at), progress)
        else:
            endpoint = await asyncio.to_thread(resolve_endpoint, provider)   # a missing key names its variable
            runner = JobRunner(endpoint, ledger=ledger, all_caps=all_caps())
            result = await run_interruptibly(
                lambda cancelled: runner.run(req, opts, on_progress=progress, is_cancelled=cancelled), progress)
        _last_video[node_key] = (fingerprint, result)
    return await result_outputs(result, settings.limits, progress, wanted, collector)


def fit_inputs(built: Built, caps, fit: str) -> Built:
    """fit_inputs crop / pad: the inputs that break the provider's limits repaired, each change reported on the
    node (engine/imageprep.py). Off, nothing is changed and a refusal says fit_inputs could repair it."""
    req, changes = apply_fixes(built.request, caps, fit_all(fit))
    return replace(built, request=req, notes=(*built.notes, *(f"fit_inputs: {c}" for c in changes)))


_ORIGIN = {"reused": " (an identical earlier job: nothing submitted or billed again)",
           "attached": " (the identical job paid for earlier: nothing submitted again)",
           "refetched": " (an identical earlier job whose saved video was gone: its result was downloaded again, "
                        "nothing billed)"}


async def result_outputs(result: JobResult, limits: FrameLimits, progress: NodeProgress, wanted: Wanted,
                         collector: FrameCollector | None) -> io.NodeOutput:
    """The six outputs. Frames and audio only when linked: unlinked, they are None and cost no decoding.
    Frames come from the download's verification pass when there was one (collector), else from a decode."""
    frames = collector.frames() if collector is not None else None
    if wanted.frames and frames is None:
        # Decoding takes seconds for long clips: off the event loop, so side-by-side nodes keep ticking.
        frames = await asyncio.to_thread(decode_video_frames, result.path, limits)
    audio = await asyncio.to_thread(audio_from_video, result.path, result.duration_s) if wanted.audio else None
    cost = result.cost_usd if result.cost_usd is not None else -1.0
    price = "free" if cost == 0 else (f"{cost:.2f} USD" if cost > 0 else "cost not reported")
    lines = [f"Done: {result.width}x{result.height}, {result.duration_s:.1f} s, {price}",
             f"Task: {result.task_id}" + _ORIGIN.get(result.origin, ""), f"Saved: {result.path}",
             f"Frames: {frames.frames.shape[0]} of {frames.source_frames}" if frames is not None
             else "Frames: not decoded (the frames output is not connected)"]
    if frames is not None and frames.note:
        log.info("HappyHorse %s", frames.note)
        lines.append(frames.note)
    log.debug("HappyHorse node %s decoded: %s", progress.node_id, wanted.key)
    progress.say("\n".join(lines))
    return io.NodeOutput(InputImpl.VideoFromFile(result.path), frames.frames if frames is not None else None,
                         audio, result.path, result.task_id, float(cost))


def single_image(image: torch.Tensor, name: str) -> MediaInput:
    count = image.shape[0] if image.ndim == 4 else 1
    if count != 1:
        raise HappyHorseError(f"{name} got a batch of {count} images; connect exactly one (e.g. through "
                              f"'Image From Batch').")
    return image_to_media(image, 0, name)


def video_bytes(video: Any) -> bytes:
    """A VIDEO as MP4/H.264 bytes: remuxed when it already is H.264 (no quality loss), else transcoded."""
    buf = stdio.BytesIO()
    video.save_to(buf, format=Types.VideoContainer.MP4, codec=Types.VideoCodec.H264)
    return buf.getvalue()


def reference_media(images: torch.Tensor | None, references: dict | None) -> tuple[MediaInput, ...]:
    """[Image N] numbering: the batch input first, in batch order, then the sockets image1, image2, ...
    All of them are encoded at once; references are looked at, not kept, so they go as JPEG (tensors.py)."""
    pictures = batch_pictures(images, "reference")
    for tensor in slot_order(references):
        pictures.extend(batch_pictures(tensor, f"reference{len(pictures) + 1}_"))
    return tuple(pictures_to_media(pictures, lossless=False))


def edit_source(video: Any, source_frames: torch.Tensor | None, source_fps: float) -> MediaInput | None:
    if video is not None:
        data = video_bytes(video)
    elif source_frames is not None:
        data = frames_to_mp4(source_frames, source_fps)
    else:
        return None                    # validation explains that a source is needed
    return MediaInput(kind="video", data=data, mime="video/mp4", name="source.mp4")




# --- each node's run: its widget values (with defaults) -> a request -> the job -> its outputs ---------------
async def text2video(cls: type[ResultNode], values: dict[str, Any]) -> io.NodeOutput:
    v = specs.with_defaults(specs.text2video().fields, values)
    built = build_request("t2v", v.get("provider"), prompt=v["prompt"], seed=v["seed"], watermark=v["watermark"])
    return await generate(cls, built, RunSettings.read(v))


async def image2video(cls: type[ResultNode], values: dict[str, Any]) -> io.NodeOutput:
    v = specs.with_defaults(specs.image2video().fields, values)
    first = await asyncio.to_thread(single_image, v["first_frame"], "first_frame")
    built = build_request("i2v", v.get("provider"), prompt=v["prompt"], seed=v["seed"], watermark=v["watermark"],
                          first_frame=first)
    return await generate(cls, built, RunSettings.read(v), v["fit_inputs"])


async def reference2video(cls: type[ResultNode], values: dict[str, Any]) -> io.NodeOutput:
    v = specs.with_defaults(specs.reference2video().fields, values)
    refs = await asyncio.to_thread(reference_media, v.get("images"), v.get("references"))
    built = build_request("r2v", v.get("provider"), prompt=v["prompt"], seed=v["seed"], watermark=v["watermark"],
                          references=refs)
    return await generate(cls, built, RunSettings.read(v), v["fit_inputs"])


async def video_edit(cls: type[ResultNode], values: dict[str, Any]) -> io.NodeOutput:
    v = specs.with_defaults(specs.video_edit().fields, values)
    source = await asyncio.to_thread(edit_source, v.get("video"), v.get("source_frames"), v["source_fps"])
    refs = await asyncio.to_thread(reference_media, None, v.get("references"))
    built = build_request("edit", v.get("provider"), prompt=v["prompt"], seed=v["seed"], watermark=v["watermark"],
                          references=refs, source_video=source, audio_setting=v["audio_setting"])
    return await generate(cls, built, RunSettings.read(v), v["fit_inputs"])


async def collect_job(cls: type[ResultNode], values: dict[str, Any]) -> io.NodeOutput:
    v = specs.with_defaults(specs.collect_job().fields, values)
    provider, task_id = v["provider"], (v.get("task_id") or "").strip()
    if not task_id:
        raise HappyHorseError("Enter the task id to collect (a generation node's task_id output, "
                              "`happyhorse jobs list`, or the provider's console).")
    ledger = await asyncio.to_thread(Ledger, ledger_path())
    endpoint = await asyncio.to_thread(resolve_for_task, ledger, task_id, provider)
    progress = NodeProgress(cls.hidden.unique_id, endpoint.adapter.caps.display_name,
                            provider_id=endpoint.adapter.name)
    runner = JobRunner(endpoint, ledger=ledger, all_caps=all_caps())
    run = RunSettings.read(v)
    wanted = cls.wanted()
    collector = FrameCollector(run.limits) if wanted.frames else None
    opts = RunOptions(out_dir=output_dir(), timeout_s=float(run.timeout_s), frames=collector)
    result = await run_interruptibly(
        lambda cancelled: runner.collect(task_id, opts=opts, on_progress=progress, is_cancelled=cancelled),
        progress)
    return await result_outputs(result, run.limits, progress, wanted, collector)
