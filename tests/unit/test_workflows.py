"""The shipped example workflows refer only to existing nodes and inputs, with valid values (no ComfyUI needed).

Our nodes' schemas come from happyhorse.comfy.specs (what define_schema is built from); core nodes from the
checked-in tests/integration/core_nodes.json, which the integration tests compare with a live /object_info.
"""
from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:        # tests/integration is imported as a package from the repository root
    sys.path.insert(0, str(ROOT))

from happyhorse.comfy import specs

from tests.integration.workflow_check import check_workflow, load_core_spec

WORKFLOW_DIR = ROOT / "workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.json"))
INPUT_FILES = {p.name for p in (WORKFLOW_DIR / "input").iterdir()}
GENERATION = {s.node_id for s in specs.node_specs() if s.mode}
REQUIRED_EXAMPLES = {
    "text to video": {"HappyHorsePack.Text2Video"},
    "image to video from LoadImage": {"LoadImage", "HappyHorsePack.Image2Video"},
    "reference to video": {"HappyHorsePack.Reference2Video"},
    "video edit from LoadVideo": {"LoadVideo", "HappyHorsePack.VideoEdit"},
    "image made in the graph, then video": {"EmptyImage", "HappyHorsePack.Image2Video"},
    "cost estimate": {"HappyHorsePack.CostEstimate"},
}


def offline_object_info() -> dict[str, dict]:
    info = load_core_spec()
    info.update({s.node_id: specs.object_info(s) for s in specs.node_specs()})
    return info


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def types(workflow: dict) -> set[str]:
    return {n["type"] for n in workflow["nodes"]}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_is_valid(path):
    assert check_workflow(load(path), offline_object_info(), INPUT_FILES) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_runs_free_and_saves_natively(path):
    workflow = load(path)
    generators = [n for n in workflow["nodes"] if n["type"] in GENERATION]
    assert generators, "every example makes a video"
    assert all(n["widgets_values_named"]["provider"] == "simulator" for n in generators)
    saves = [n for n in workflow["nodes"] if n["type"] == "SaveVideo"]
    assert len(saves) == len(generators)
    assert all(n["widgets_values_named"]["format"] == "mp4" and n["widgets_values_named"]["format.codec"] == "h264"
               for n in saves)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_has_a_real_thumbnail(path):
    thumb = path.with_suffix(".jpg")
    assert thumb.exists(), f"{thumb.name} is missing (run the integration tests with HAPPYHORSE_WRITE_THUMBNAILS=1)"
    with Image.open(thumb) as img:
        assert img.format == "JPEG" and img.width >= 256
        levels = np.asarray(img.convert("L").resize((32, 18)))
        assert len(np.unique(levels)) > 8, "a real frame, not a flat picture"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_carries_no_secret(path):
    assert not re.search(r"\bsk-[A-Za-z0-9-]{8,}|Bearer\s+\S", path.read_text()), "something that looks like a key"
    for node in load(path)["nodes"]:
        names = set(node.get("widgets_values_named") or {}) | {i["name"] for i in node.get("inputs", [])}
        assert not [n for n in names if re.search(r"key|token|secret|password", n, re.IGNORECASE)]


def test_the_required_examples_exist():
    found = [types(load(p)) for p in WORKFLOWS]
    for what, needed in REQUIRED_EXAMPLES.items():
        assert any(needed <= t for t in found), f"no example workflow for {what}"
    r2v = next(load(p) for p in WORKFLOWS if "HappyHorsePack.Reference2Video" in types(load(p)))
    node = next(n for n in r2v["nodes"] if n["type"] == "HappyHorsePack.Reference2Video")
    assert sum(1 for i in node["inputs"] if i["name"].startswith("references.") and i["link"] is not None) == 3
    assert any(sum(1 for n in load(p)["nodes"] if n["type"] in GENERATION) == 2 for p in WORKFLOWS), \
        "no side-by-side example"


def test_the_checker_catches_broken_workflows():
    """The checks above can fail: each mutation of a good workflow is reported."""
    info = offline_object_info()
    good = load(WORKFLOW_DIR / "happyhorse_text_to_video.json")
    assert check_workflow(good, info, INPUT_FILES) == []

    def broken(change) -> list[str]:
        workflow = copy.deepcopy(good)
        node = next(n for n in workflow["nodes"] if n["type"] == "HappyHorsePack.Text2Video")
        change(workflow, node)
        return check_workflow(workflow, info, INPUT_FILES)

    def set_both(name, value):
        def change(workflow, node):
            node["widgets_values_named"][name] = value
            index = list(node["widgets_values_named"]).index(name)
            node["widgets_values"][index] = value
        return change

    assert broken(set_both("provider.version.aspect_ratio", "2:1"))
    assert broken(set_both("provider.version.duration", 30))
    assert broken(set_both("provider", "nowhere"))
    assert broken(lambda w, n: n["widgets_values_named"].update({"provider.version.resolution": "4k"}))
    assert broken(lambda w, n: n.update(type="HappyHorsePack.Gone"))
    assert broken(lambda w, n: w["links"].__setitem__(0, [*w["links"][0][:5], "IMAGE"]))
    load_image = load(WORKFLOW_DIR / "happyhorse_image_to_video.json")
    next(n for n in load_image["nodes"] if n["type"] == "LoadImage")["widgets_values_named"]["image"] = "nope.png"
    assert check_workflow(load_image, info, INPUT_FILES)
