"""A real key travels through the nodes to the host, and is found nowhere it must not be."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import CANARY_KEY, t2v_prompt
from .server import REPO, run_prompt

pytestmark = pytest.mark.integration


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def read_all(paths) -> dict[Path, bytes]:
    """Every file's bytes, from one scan in which none went away: the server keeps running, and SQLite folds
    its -wal file into the database and deletes it whenever it likes. A vanished file means scan again."""
    for _ in range(10):
        try:
            return {p: p.read_bytes() for p in paths()}
        except FileNotFoundError:
            continue
    raise AssertionError("files kept disappearing while being read")


async def test_key_is_used_but_never_saved(comfy, external_sim, object_info):
    # Through the "dashscope" provider: the node reads DASHSCOPE_API_KEY (the canary), sends it to the stand-in
    # host, and the workflow metadata rides along into the MP4 and PNG files, as from the frontend.
    prompt = t2v_prompt("a horse guarding a secret", 401, provider="dashscope", extra={"frames_max_mb": 64})
    prompt["3"] = {"class_type": "SaveImage", "inputs": {"images": ["1", 1], "filename_prefix": "hh_secret"}}
    workflow = json.loads((REPO / "workflows" / "happyhorse_text_to_video.json").read_text())
    result = await run_prompt(comfy, prompt, extra_data={"extra_pnginfo": {"workflow": workflow}})
    assert result.status == "success", result.error_message()

    sent = [r for r in external_sim.core.requests["dashscope"] if r["method"] == "POST"]
    assert sent and sent[-1]["headers"].get("Authorization"), "the key was sent to the host"

    saved = files_under(comfy.output_dir)
    assert any(p.suffix == ".png" for p in saved) and any(p.suffix == ".mp4" for p in saved)
    png = next(p for p in saved if p.suffix == ".png").read_bytes()
    assert b"HappyHorsePack.Text2Video" in png, "the PNG carries the workflow, so the search below means something"

    needle = CANARY_KEY.encode()
    places = {
        "output files": lambda: files_under(comfy.output_dir),
        "user dir (ledger, settings)": lambda: files_under(comfy.base / "user"),
        "shipped workflows": lambda: sorted((REPO / "workflows").glob("*.json")),
    }
    for what, paths in places.items():
        leaks = [str(p) for p, data in read_all(paths).items() if needle in data]
        assert not leaks, f"key found in {what}: {leaks}"
    assert CANARY_KEY not in comfy.log_path.read_text(errors="replace"), "key found in the ComfyUI log"
    assert CANARY_KEY not in json.dumps(comfy.get_json("/history")), "key found in the history"
    assert CANARY_KEY not in json.dumps(object_info), "key found in /object_info"
