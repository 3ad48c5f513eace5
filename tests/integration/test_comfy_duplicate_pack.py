"""Two copies of the pack (a Manager install plus a clone under another folder name) leave ComfyUI running."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from happyhorse.comfy import specs

from .conftest import KEY_ENV_SUFFIXES
from .server import PACK_NAME, ComfyServer, python_for_comfy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_copies(tmp_path_factory):
    comfy_dir = os.environ.get("COMFYUI_DIR")
    if not comfy_dir:
        pytest.skip("COMFYUI_DIR is not set: point it at a ComfyUI checkout (and COMFYUI_PYTHON at its python)")
    base = tmp_path_factory.mktemp("comfy-two-copies")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HAPPYHORSE_") and not k.endswith(KEY_ENV_SUFFIXES)}
    env.update({"HAPPYHORSE_HOME": str(base / "happyhorse-home"), "XDG_CONFIG_HOME": str(base / "xdg-config")})
    # ComfyUI loads custom_nodes in directory-listing order; both orders must work, so the names sort either way.
    server = ComfyServer(Path(comfy_dir), python_for_comfy(), base, env,
                         pack_names=(PACK_NAME, "ComfyUI-HappyHorse-git")).start()
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
