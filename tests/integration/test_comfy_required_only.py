"""API prompts that carry only the required inputs run: every optional input takes its default when absent.

API users, and workflows saved before an input existed, leave optional inputs out. The prompts here are built
from the live /object_info, keeping only what it lists as required (and, for the media nodes, the one socket
the mode needs), so a new optional input is covered without editing this file.
"""
from __future__ import annotations

from typing import Any

import pytest
from happyhorse.engine.media import verify_video

from .conftest import ledger_rows
from .server import run_prompt

pytestmark = pytest.mark.integration

DYNAMIC = "COMFY_DYNAMICCOMBO_V3"
SOCKETS = ("IMAGE", "VIDEO", "AUDIO")


def required_inputs(entry: dict, picks: dict[str, str], set_: dict[str, Any]) -> dict[str, Any]:
    """The node's required widgets at their defaults (dynamic combos: the option named in picks, else the first),
    with set_ overriding values by their dotted name. Sockets are left for the caller to link."""
    inputs: dict[str, Any] = {}

    def walk(required: dict, prefix: str) -> None:
        for name, (kind, opts) in required.items():
            key = prefix + name
            if kind == DYNAMIC:
                option = next((o for o in opts["options"] if o["key"] == picks.get(name)), opts["options"][0])
                inputs[key] = option["key"]
                walk(option["inputs"].get("required", {}), key + ".")
            elif kind not in SOCKETS:
                inputs[key] = set_.get(key, opts.get("default", (opts.get("options") or [None])[0]))

    walk(entry["input"]["required"], "")
    return inputs


def optional_names(entry: dict, picks: dict[str, str]) -> set[str]:
    names: set[str] = set()

    def walk(group: dict, prefix: str) -> None:
        names.update(prefix + n for n in group.get("optional", {}))
        for name, (kind, opts) in group.get("required", {}).items():
            if kind == DYNAMIC:
                option = next((o for o in opts["options"] if o["key"] == picks.get(name)), opts["options"][0])
                walk(option["inputs"], prefix + name + ".")

    walk(entry["input"], "")
    return names


SAVE = {"class_type": "SaveVideo", "inputs": {"video": ["1", 0], "filename_prefix": "video/hh_required_only",
                                              "format": "mp4", "format.codec": "h264"}}
PICKS = {"provider": "simulator", "mode": "edit"}


def prompt_for(object_info: dict, node: str, set_: dict[str, Any], links: dict[str, list]) -> dict:
    entry = object_info[f"HappyHorsePack.{node}"]
    inputs = required_inputs(entry, PICKS, set_)
    left_out = optional_names(entry, PICKS) - set(links)
    assert left_out and not left_out & set(inputs), "the prompt must leave the optional inputs out"
    return {"1": {"class_type": f"HappyHorsePack.{node}", "inputs": {**inputs, **links}}}


@pytest.mark.parametrize("node, set_, media", [
    ("Text2Video", {"prompt": "required inputs only: a horse"}, None),
    ("Image2Video", {"prompt": "required inputs only: push in"}, ("first_frame", "image")),
    ("Reference2Video", {"prompt": "[Image 1] with required inputs only"}, ("images", "image")),
    ("VideoEdit", {"prompt": "required inputs only: make it night"}, ("video", "video")),
])
async def test_generation_node_with_only_required_inputs(comfy, object_info, node, set_, media):
    set_ = {**set_, "provider.version.duration": 3}
    loaders = {"image": {"class_type": "LoadImage", "inputs": {"image": "happyhorse_first_frame.jpg"}},
               "video": {"class_type": "LoadVideo", "inputs": {"file": "happyhorse_source.mp4"}}}
    links = {media[0]: ["3", 0]} if media else {}
    prompt = {**prompt_for(object_info, node, set_, links), "2": SAVE,
              **({"3": loaders[media[1]]} if media else {})}
    result = await run_prompt(comfy, prompt)
    assert result.status == "success", result.error_message() or comfy.log_tail()
    [video] = result.saved_videos(comfy.output_dir)
    assert verify_video(video).has_audio
    job = ledger_rows(comfy)[-1]
    assert job["provider"] == "simulator" and job["status"] == "done"


async def test_cost_estimate_with_only_required_inputs(comfy, object_info):
    prompt = prompt_for(object_info, "CostEstimate", {}, {})
    result = await run_prompt(comfy, prompt)
    assert result.status == "success", result.error_message()
    assert result.history["outputs"]["1"]["text"][0].startswith("Free (simulator)")


async def test_collect_job_with_only_required_inputs(comfy, object_info):
    made = await run_prompt(comfy, {**prompt_for(object_info, "Text2Video", {
        "prompt": "to collect with required inputs only", "provider.version.duration": 3}, {}), "2": SAVE})
    assert made.status == "success", made.error_message()
    task_id = ledger_rows(comfy)[-1]["task_id"]
    result = await run_prompt(comfy, {**prompt_for(object_info, "CollectJob", {"task_id": task_id}, {}), "2": SAVE})
    assert result.status == "success", result.error_message()
    [video] = result.saved_videos(comfy.output_dir)
    assert verify_video(video).duration_s == pytest.approx(3.0, abs=0.1)
