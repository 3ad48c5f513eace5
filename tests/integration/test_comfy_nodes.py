"""The nodes' outputs work with ComfyUI's own nodes; bad input and missing keys fail clearly and cost nothing."""
from __future__ import annotations

import pytest
from happyhorse.engine.media import probe_video, verify_video
from happyhorse.providers.registry import ADAPTERS

from .conftest import ledger_rows, t2v_prompt
from .server import run_prompt

pytestmark = pytest.mark.integration


def with_outputs_into_core_nodes(frames_max_mb: int, seed: int) -> dict:
    """frames + audio -> CreateVideo -> SaveVideo; VIDEO -> GetVideoComponents -> fps; file path and cost shown."""
    prompt = t2v_prompt("frames and audio check", seed, duration=3, extra={"frames_max_mb": frames_max_mb})
    prompt.update({
        "3": {"class_type": "CreateVideo", "inputs": {"images": ["1", 1], "fps": 24.0, "audio": ["1", 2]}},
        "4": {"class_type": "SaveVideo", "inputs": {"video": ["3", 0], "filename_prefix": "video/hh_rebuilt",
                                                    "format": "mp4", "format.codec": "h264"}},
        "5": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "6": {"class_type": "PreviewAny", "inputs": {"source": ["5", 2]}},
        "7": {"class_type": "PreviewAny", "inputs": {"source": ["1", 3]}},
        "8": {"class_type": "PreviewAny", "inputs": {"source": ["1", 5]}},
    })
    return prompt


def shown(result, node: str) -> str:
    return result.history["outputs"][node]["text"][0]


async def test_frames_audio_and_video_work_with_core_nodes(comfy):
    result = await run_prompt(comfy, with_outputs_into_core_nodes(frames_max_mb=2048, seed=301))
    assert result.status == "success", result.error_message()
    original, rebuilt = (comfy.output_dir / "video" / f["filename"]
                         for f in (result.history["outputs"]["2"]["images"][0],
                                   result.history["outputs"]["4"]["images"][0]))
    a, b = verify_video(original), verify_video(rebuilt)
    assert (b.width, b.height, b.frame_count) == (a.width, a.height, a.frame_count) == (1280, 720, 72)
    assert b.has_audio and abs(b.duration_s - a.duration_s) < 0.1
    assert float(shown(result, "6")) == 24.0                       # GetVideoComponents read our VIDEO
    assert shown(result, "7").startswith(str(comfy.output_dir / "happyhorse"))
    assert float(shown(result, "8")) == 0.0                        # the simulator is free


async def test_frame_memory_ceiling_thins_frames(comfy):
    # One 1280x720 float32 frame is 10.5 MB: a 64 MB ceiling leaves 6 of the 72 frames.
    result = await run_prompt(comfy, with_outputs_into_core_nodes(frames_max_mb=64, seed=302))
    assert result.status == "success", result.error_message()
    rebuilt = comfy.output_dir / "video" / result.history["outputs"]["4"]["images"][0]["filename"]
    assert probe_video(rebuilt).frame_count == 6
    final = [t for _, node, t in result.texts if node == "1"][-1]
    assert "Frames: 6 of 72" in final and "64 MB" in final


async def test_invalid_request_is_refused_before_anything_is_sent(comfy, inner_sim_url):
    before = len(ledger_rows(comfy))
    result = await run_prompt(comfy, t2v_prompt("   ", 303))
    assert result.status == "error"
    message = result.error_message()
    assert "Request refused before sending" in message and "prompt: is required" in message
    refs = await run_prompt(comfy, {"1": {"class_type": "HappyHorsePack.Reference2Video", "inputs": {
        **t2v_prompt("[Image 1] runs", 304)["1"]["inputs"]}}, "2": t2v_prompt("x", 1)["2"]})
    assert "images/image1..9: 0 given" in refs.error_message()
    assert len(ledger_rows(comfy)) == before, "nothing was recorded, so nothing was submitted"


async def test_missing_key_names_its_variable(comfy):
    keyless = [n for n, a in ADAPTERS.items() if n not in ("simulator", "dashscope")
               and any("t2v" in v.modes and "1.1" == k for k, v in a.caps.versions.items())]
    if not keyless:
        pytest.skip("no provider without a key in this build offers t2v 1.1")
    provider = keyless[0]
    before = len(ledger_rows(comfy))
    result = await run_prompt(comfy, t2v_prompt("a horse", 305, provider=provider))
    message = result.error_message()
    assert ADAPTERS[provider].caps.key_env in message and "never go into a node widget" in message
    assert len(ledger_rows(comfy)) == before


async def test_unknown_provider_in_a_workflow_is_a_clear_error(comfy):
    prompt = t2v_prompt("a horse", 306)
    prompt["1"]["inputs"]["provider"] = "no-such-host"
    result = await run_prompt(comfy, prompt)
    assert "not available in this installation" in result.error_message()


async def test_collect_job_fetches_a_finished_task_again(comfy):
    first = await run_prompt(comfy, t2v_prompt("a horse to collect later", 307))
    assert first.status == "success", first.error_message()
    job = ledger_rows(comfy)[-1]
    before = len(ledger_rows(comfy))
    collect = {"1": {"class_type": "HappyHorsePack.CollectJob", "inputs": {
        "provider": "simulator", "task_id": job["task_id"], "timeout_s": 600, "max_frames": 0, "frame_step": 1,
        "max_side": 0, "frames_max_mb": 256}},
        "2": {"class_type": "SaveVideo", "inputs": {"video": ["1", 0], "filename_prefix": "video/hh_collected",
                                                    "format": "mp4", "format.codec": "h264"}}}
    result = await run_prompt(comfy, collect)
    assert result.status == "success", result.error_message()
    saved = comfy.output_dir / "video" / result.history["outputs"]["2"]["images"][0]["filename"]
    assert verify_video(saved).duration_s == pytest.approx(3.0, abs=0.1)
    assert len(ledger_rows(comfy)) == before, "collecting reuses the job's ledger entry"
    assert ledger_rows(comfy)[-1]["status"] == "done"
