"""Every shipped workflow, converted from its saved UI form, runs in a real ComfyUI and writes the right video."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from happyhorse.engine.media import verify_video

from .conftest import ledger_rows
from .convert import convert
from .server import REPO, run_prompt

pytestmark = pytest.mark.integration

WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
# Read at import: the suite's autouse fixture clears HAPPYHORSE_* variables before each test.
WRITE_THUMBNAILS = os.environ.get("HAPPYHORSE_WRITE_THUMBNAILS") == "1"
# Per workflow: the videos SaveVideo must write (filename prefix, width, height, seconds). Written out by hand
# from the workflows' settings, not computed by the code under test.
EXPECTED = {
    "happyhorse_text_to_video": [("happyhorse_t2v", 1280, 720, 5.0)],
    "happyhorse_image_to_video": [("happyhorse_i2v", 1280, 720, 5.0)],          # 960x540 first frame
    "happyhorse_reference_to_video": [("happyhorse_r2v", 1280, 720, 5.0)],
    "happyhorse_video_edit": [("happyhorse_edit", 1280, 720, 3.5)],             # 576x324, 3.5 s source
    "happyhorse_image_then_video": [("happyhorse_image_then_video", 1280, 720, 5.0)],
    "happyhorse_cost_estimate": [("happyhorse_cost_preview", 1920, 1080, 10.0)],
    "happyhorse_side_by_side": [("happyhorse_side_a", 1280, 720, 5.0), ("happyhorse_side_b", 720, 1280, 5.0)],
}


def test_every_workflow_has_expectations():
    assert sorted(p.stem for p in WORKFLOWS) == sorted(EXPECTED)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
async def test_workflow_runs(comfy, object_info, path: Path):
    workflow = json.loads(path.read_text())
    prompt = convert(workflow, object_info)
    jobs_before = len(ledger_rows(comfy))
    # Like the frontend: the UI workflow travels along as PNG/MP4 metadata.
    result = await run_prompt(comfy, prompt, extra_data={"extra_pnginfo": {"workflow": workflow}})
    print(f"\n{path.stem}: {result.status} in {result.seconds:.1f} s")
    assert result.status == "success", result.error_message() or comfy.log_tail()

    videos = sorted(result.saved_videos(comfy.output_dir))
    expected = EXPECTED[path.stem]
    assert len(videos) == len(expected)
    for (prefix, width, height, seconds), video in zip(sorted(expected), videos):
        assert video.name.startswith(prefix)
        info = verify_video(video)                  # opens, first frame and tail decode
        assert info.video_codec == "h264" and info.pix_fmt == "yuv420p"
        assert (info.width, info.height) == (width, height)
        assert abs(info.duration_s - seconds) < 0.15, info.duration_s
        assert info.has_audio and info.audio_codec == "aac"

    jobs = ledger_rows(comfy)[jobs_before:]
    assert len(jobs) == len(expected)
    assert all(j["status"] == "done" and j["provider"] == "simulator" and j["cost_usd"] == 0 for j in jobs)
    assert all(Path(j["local_path"]).parent == comfy.output_dir / "happyhorse" for j in jobs)

    hh_nodes = {nid for nid, n in prompt.items() if n["class_type"].startswith("HappyHorsePack.")
                and n["class_type"] != "HappyHorsePack.CostEstimate"}
    texts = {node: text for _, node, text in result.texts if node in hh_nodes}
    assert set(texts) == hh_nodes, "every generation node shows progress text"
    assert all(t.startswith("Done:") for t in texts.values())
    assert any("Time elapsed:" in text and "Price: free" in text for _, _, text in result.texts)

    if path.stem == "happyhorse_cost_estimate":
        shown = json.dumps(result.history["outputs"])
        assert "1.80 USD" in shown and "0.18 USD/s x 10 s" in shown

    if WRITE_THUMBNAILS:
        write_thumbnail(videos[0], path.with_suffix(".jpg"))


def write_thumbnail(video: Path, target: Path) -> None:
    """A real frame (40% in) of the workflow's own output, as the template browser's picture."""
    from happyhorse.engine.media import decode_frames, plan_frames, probe_video
    from PIL import Image

    info = probe_video(video)
    plan = plan_frames(info, max_side=512)
    middle = plan.indices[int(len(plan.indices) * 0.4)]
    plan = type(plan)(indices=[middle], width=plan.width, height=plan.height, count=1)
    Image.fromarray(decode_frames(video, plan)[0]).save(target, format="JPEG", quality=85)
