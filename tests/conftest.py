import io
import os
from pathlib import Path

import pytest

TESTS = Path(__file__).parent

KEY_VARS = ("DASHSCOPE_API_KEY", "GETIMG_API_KEY", "APIXO_API_KEY", "APIFRAME_API_KEY", "AIMLAPI_API_KEY",
            "REAPI_API_KEY")


def pytest_xdist_auto_num_workers(config) -> int:
    """Workers for `-n auto` (the default, see pyproject.toml): two per core, at most four. Most tests wait on a
    simulated host, a subprocess or a socket rather than compute, so a 2-core machine keeps four busy.
    PYTEST_XDIST_AUTO_NUM_WORKERS=N overrides."""
    override = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "")
    if override.isdigit():
        return int(override)
    return max(1, min(4, 2 * len(os.sched_getaffinity(0))))


@pytest.hookimpl(tryfirst=True)       # before pytest-xdist turns xdist_group marks into scheduling groups
def pytest_collection_modifyitems(config, items):
    """Tests that share something costly run on one worker, in collection order: every real-ComfyUI test (one
    ComfyUI per worker, started once), and the tests of a module or session fixture of ours (a browser, an S3
    server, a rendered clip) - built once, not once per worker. Everything else is spread over the workers."""
    for item in items:
        group = _shared_group(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


def _shared_group(item) -> str | None:
    path = Path(str(item.path))
    if (TESTS / "integration") in path.parents:
        return "comfyui"
    for name, defs in item._fixtureinfo.name2fixturedefs.items():
        fixture = defs[-1]
        if fixture.scope == "function" or not fixture.baseid:     # baseid "": a plugin's fixture, not ours
            continue
        return f"fixture-{name}" if fixture.scope in ("session", "package") else item.nodeid.split("::")[0]
    return None


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No real keys, no user config, a private ledger: tests never touch the user's files or real hosts."""
    for var in KEY_VARS:
        monkeypatch.delenv(var, raising=False)
    for var in list(os.environ):
        if var.startswith("HAPPYHORSE_"):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HAPPYHORSE_HOME", str(tmp_path / "hh-home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    yield


@pytest.fixture
def sim():
    from happyhorse.simulator.core import SimTiming
    from happyhorse.simulator.server import SimulatorServer

    server = SimulatorServer(timing=SimTiming(queue_s=0.3, process_s=0.5), control=True).start()
    yield server
    server.stop()


def png_bytes(w: int = 640, h: int = 480, color=(200, 80, 40), fmt: str = "PNG") -> bytes:
    from PIL import Image

    img = Image.new("RGB", (w, h), color)
    for x in range(0, w, 40):   # some structure so frames are recognisable
        for y in range(0, h, 40):
            img.putpixel((x, y), (255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def image_png():
    return png_bytes
