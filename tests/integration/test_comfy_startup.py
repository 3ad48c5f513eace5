"""What ComfyUI's start-up pays for the pack: the node schemas and the routes, not the engine that runs jobs.

The engine's running parts (runner, ledger and its SQLite, uploads cache, media decoding, image repair, the
node's run code) load on a node's first run; the benchmark (`python -m benchmarks.comfy_graph`) reports the
time ComfyUI itself measures for the pack.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import KEY_ENV_SUFFIXES
from .server import ComfyServer, pack_load, python_for_comfy

pytestmark = pytest.mark.integration

LOADED_ON_FIRST_RUN = ("nodes.comfy.running", "nodes.comfy.tensors", "nodes.comfy.estimates", "nodes.comfy.params",
                       "nodes.engine.runner", "nodes.engine.ledger", "nodes.engine.dedupe",
                       "nodes.engine.delivery", "nodes.engine.follow", "nodes.engine.budget", "nodes.engine.jobs",
                       "nodes.engine.media", "nodes.engine.imageprep", "nodes.engine.uploads.cache")
NOT_OURS_TO_LOAD = ("sqlite3", "boto3", "botocore")


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    comfy_dir = os.environ.get("COMFYUI_DIR")
    if not comfy_dir:
        pytest.skip("COMFYUI_DIR is not set: point it at a ComfyUI checkout (and COMFYUI_PYTHON at its python)")
    base = tmp_path_factory.mktemp("comfy-startup")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HAPPYHORSE_") and not k.endswith(KEY_ENV_SUFFIXES)}
    env.update({"HAPPYHORSE_HOME": str(base / "happyhorse-home"), "XDG_CONFIG_HOME": str(base / "xdg-config"),
                "PYTHONPROFILEIMPORTTIME": "1"})
    server = ComfyServer(Path(comfy_dir), python_for_comfy(), base, env).start()
    try:
        assert "HappyHorsePack.Text2Video" in server.object_info()
    finally:
        server.stop()
    return pack_load(server.log_path.read_text(errors="replace"))


def test_start_up_loads_the_schemas_not_the_engine_that_runs_jobs(started):
    loaded = set(started.modules)
    assert "nodes.comfy.specs" in loaded and "nodes.providers.registry" in loaded    # the parse sees our tree
    assert not loaded & set(LOADED_ON_FIRST_RUN), sorted(loaded & set(LOADED_ON_FIRST_RUN))
    assert not {m for m in loaded if m.split(".")[0] in NOT_OURS_TO_LOAD}
    print(f"\npack load: ComfyUI says {started.comfy_line_s} s; import {started.import_s * 1000:.0f} ms "
          f"(traced), {len(loaded)} modules")
