"""Two copies of the pack (a Manager install plus a clone under another folder name) leave ComfyUI running."""
from __future__ import annotations

import re

import pytest
from happyhorse.comfy import specs

from .conftest import own_comfy
from .server import PACK_NAME

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_copies(tmp_path_factory):
    # ComfyUI loads custom_nodes in directory-listing order; both orders must work, so the names sort either way.
    server = own_comfy(tmp_path_factory, "comfy-two-copies", pack_names=(PACK_NAME, "ComfyUI-HappyHorse-git")).start()
    yield server
    server.stop()


def test_comfyui_starts_and_serves_one_copy(two_copies):
    info = two_copies.object_info()
    for spec in specs.node_specs():
        assert spec.node_id in info
    log = two_copies.log_path.read_text(errors="replace")
    lines = [line for line in log.splitlines() if "another copy of this pack is already loaded" in line]
    assert len(lines) == 1, log[-4000:]
    assert re.search(r"from \S+/custom_nodes/(comfyui-happyhorse|ComfyUI-HappyHorse-git), so the copy in "
                     r"\S+/custom_nodes/(comfyui-happyhorse|ComfyUI-HappyHorse-git) is skipped", lines[0]), lines[0]
    assert "IMPORT FAILED" not in log and "Traceback" not in log
    extensions = [e for e in two_copies.get_json("/extensions") if e.endswith("/happyhorse.js")]
    assert len(extensions) == 1, extensions


def test_the_loaded_copy_answers(two_copies):
    status, body = two_copies.post_json("/happyhorse/price", {"node_type": "HappyHorsePack.Text2Video", "widgets": {
        "provider": "dashscope", "provider.version": "1.1", "provider.version.resolution": "1080p",
        "provider.version.aspect_ratio": "16:9", "provider.version.duration": 10}})
    assert status == 200 and body["label"] == "~1.80 USD"
