"""The pack loads through the V3 entry point and what CI checks offline matches the live server."""
from __future__ import annotations

import json

import pytest
from happyhorse.comfy import specs

from . import golden
from .server import PACK_NAME, REPO
from .workflow_check import check_workflow, load_core_spec, normalize_node

pytestmark = pytest.mark.integration


def test_pack_loads_without_errors(comfy):
    log = comfy.log_path.read_text(errors="replace")
    assert PACK_NAME in log and "IMPORT FAILED" not in log


def test_live_server_reports_exactly_the_committed_object_info(object_info):
    """The unit tests hold the specs to the golden file; this holds ComfyUI's own rendering of the nodes
    (schema.py through comfy_api) to it, so the offline rendering cannot drift from what users see."""
    ours = {name: entry for name, entry in object_info.items() if name.startswith(specs.ID_PREFIX)}
    problem = golden.mismatch(ours, "the live server's /object_info")
    assert not problem, problem


def test_checked_in_core_nodes_match_the_live_server(object_info):
    """If ComfyUI changes a core node the workflows use, this names it (update core_nodes.json and workflows)."""
    changed = [name for name, entry in load_core_spec().items()
               if name not in object_info or normalize_node(object_info[name]) != normalize_node(entry)]
    assert not changed, f"core nodes changed: {changed}"


def test_workflows_pass_the_checks_against_the_live_server(comfy, object_info):
    files = {p.name for p in (comfy.base / "input").iterdir()}
    for path in sorted((REPO / "workflows").glob("*.json")):
        assert check_workflow(json.loads(path.read_text()), object_info, files) == [], path.name


def test_ids_do_not_clash_with_comfyui_own_happyhorse_nodes(object_info):
    official = {k for k in object_info if k.startswith("HappyHorse") and k.endswith("Api")}
    ours = {s.node_id for s in specs.node_specs()}
    assert official and not official & ours


def test_templates_and_web_extension_are_served(comfy):
    templates = comfy.get_json("/workflow_templates")
    assert sorted(templates[PACK_NAME]) == sorted(p.stem for p in (REPO / "workflows").glob("*.json"))
    assert f"/extensions/{PACK_NAME}/happyhorse.js" in comfy.get_json("/extensions")


def test_price_route_answers_for_the_pill(comfy):
    status, body = comfy.post_json("/happyhorse/price", {"node_type": "HappyHorsePack.Text2Video", "widgets": {
        "provider": "dashscope", "provider.version": "1.1", "provider.version.resolution": "1080p",
        "provider.version.aspect_ratio": "16:9", "provider.version.duration": 10}})
    assert status == 200 and body["label"] == "~1.80 USD"
    status, body = comfy.post_json("/happyhorse/price", {"node_type": "HappyHorsePack.Text2Video", "widgets": {
        "provider": "nowhere"}})
    assert status == 400 and "not available" in body["error"]
