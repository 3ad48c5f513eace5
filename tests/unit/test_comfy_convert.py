"""The UI -> API workflow converter the integration tests rely on, on small hand-made graphs."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:        # tests/integration is imported as a package from the repository root
    sys.path.insert(0, str(ROOT))

from tests.integration.convert import ConversionError, convert, widget_values

INFO = {
    "Gen": {"input": {"required": {
        "prompt": ["STRING", {"multiline": True}],
        "model": ["COMFY_DYNAMICCOMBO_V3", {"options": [
            {"key": "a", "inputs": {"required": {"size": ["COMBO", {"options": ["s", "m"]}],
                                                 "refs": ["COMFY_AUTOGROW_V3", {"template": {
                                                     "input": {"required": {"image": ["IMAGE", {}]}},
                                                     "names": ["image1", "image2"], "min": 0}}]}}},
            {"key": "b", "inputs": {"required": {}}}]}],
        "seed": ["INT", {"default": 0}],
        "steps": ["INT", {"default": 4, "control_after_generate": False}],
        "mode": [["x", "y"], {}]},
        "optional": {"image": ["IMAGE", {}], "strength": ["FLOAT", {"default": 1.0}]}},
        "input_order": {"required": ["prompt", "model", "seed", "steps", "mode"], "optional": ["image", "strength"]},
        "output": ["IMAGE"], "output_name": ["IMAGE"]},
    "Src": {"input": {"required": {}}, "output": ["IMAGE"], "output_name": ["IMAGE"]},
    "Pass": {"input": {"required": {"image": ["IMAGE", {}]}}, "output": ["IMAGE"], "output_name": ["IMAGE"]},
}


def gen_node(values, inputs=(), mode=0, named=None):
    node = {"id": 3, "type": "Gen", "mode": mode, "inputs": list(inputs), "widgets_values": values}
    if named is not None:
        node["widgets_values_named"] = named
    return node


def test_positional_values_follow_dynamic_combos_and_skip_control_slots():
    node = gen_node(["hi", "a", "m", 7, "randomize", 3, "y", 0.5])
    assert widget_values(node, INFO["Gen"]) == {"prompt": "hi", "model": "a", "model.size": "m", "seed": 7,
                                                "steps": 3, "mode": "y", "strength": 0.5}
    other = gen_node(["hi", "b", 7, "fixed", 3, "x"])            # option b has no nested widgets
    assert widget_values(other, INFO["Gen"]) == {"prompt": "hi", "model": "b", "seed": 7, "steps": 3, "mode": "x"}


def test_named_values_win_and_frontend_only_names_are_dropped():
    node = gen_node(["stale"], named={"prompt": "new", "model": "b", "seed": 1, "control_after_generate": "fixed",
                                      "steps": 2, "mode": "x"})
    assert widget_values(node, INFO["Gen"]) == {"prompt": "new", "model": "b", "seed": 1, "steps": 2, "mode": "x"}
    assert widget_values(node, INFO["Gen"], prefer_named=False) == {"prompt": "stale"}


def test_links_override_widgets_and_follow_bypass_and_reroute():
    workflow = {"nodes": [
        {"id": 1, "type": "Src", "mode": 0, "inputs": [], "widgets_values": []},
        {"id": 2, "type": "Pass", "mode": 4, "inputs": [{"name": "image", "type": "IMAGE", "link": 1}]},
        {"id": 5, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "type": "*", "link": 2}]},
        gen_node(["p", "a", "s", 1, "fixed", 2, "x"], inputs=[
            {"name": "model.refs.image1", "type": "IMAGE", "link": 3},
            {"name": "image", "type": "IMAGE", "link": 4}]),
        {"id": 9, "type": "Note", "mode": 0, "inputs": [], "widgets_values": ["hello"]},
    ], "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 5, 0, "IMAGE"], [3, 5, 0, 3, 0, "IMAGE"],
                 [4, 1, 0, 3, 1, "IMAGE"]]}
    prompt = convert(workflow, INFO)
    assert set(prompt) == {"1", "3"}                         # bypassed, reroute and note nodes are not sent
    gen = prompt["3"]["inputs"]
    assert gen["model.refs.image1"] == ["1", 0] and gen["image"] == ["1", 0]
    assert gen["model.size"] == "s" and prompt["3"]["class_type"] == "Gen"


def test_muted_nodes_are_dropped_and_unknown_types_refused():
    workflow = {"nodes": [{"id": 1, "type": "Src", "mode": 2, "inputs": []},
                          gen_node(["p", "b", 1, "fixed", 2, "x"], inputs=[
                              {"name": "image", "type": "IMAGE", "link": 1}])],
                "links": [[1, 1, 0, 3, 5, "IMAGE"]]}
    prompt = convert(workflow, INFO)
    assert "1" not in prompt and "image" not in prompt["3"]["inputs"]
    with pytest.raises(ConversionError, match="not installed"):
        convert({"nodes": [{"id": 1, "type": "Missing", "mode": 0}], "links": []}, INFO)
