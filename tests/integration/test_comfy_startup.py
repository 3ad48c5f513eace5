"""What ComfyUI's start-up pays for the pack: the node schemas and the routes, not the engine that runs jobs.

The engine's running parts (runner, ledger and its SQLite, uploads cache, media decoding, image repair, the
node's run code) load on a node's first run; the benchmark (`python -m benchmarks.comfy_graph`) reports the
time ComfyUI itself measures for the pack.
"""
from __future__ import annotations

import pytest

from .conftest import own_comfy
from .server import pack_load

pytestmark = pytest.mark.integration

LOADED_ON_FIRST_RUN = ("nodes.comfy.running", "nodes.comfy.tensors", "nodes.comfy.estimates", "nodes.comfy.params",
                       "nodes.engine.runner", "nodes.engine.ledger", "nodes.engine.dedupe",
                       "nodes.engine.delivery", "nodes.engine.follow", "nodes.engine.budget", "nodes.engine.jobs",
                       "nodes.engine.media", "nodes.engine.imageprep", "nodes.engine.uploads.cache")
NOT_OURS_TO_LOAD = ("sqlite3", "boto3", "botocore")


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    server = own_comfy(tmp_path_factory, "comfy-startup", {"PYTHONPROFILEIMPORTTIME": "1"}).start()
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
