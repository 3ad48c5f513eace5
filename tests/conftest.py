import io
import os

import pytest

KEY_VARS = ("DASHSCOPE_API_KEY", "GETIMG_API_KEY", "APIXO_API_KEY", "APIFRAME_API_KEY", "AIMLAPI_API_KEY",
            "REAPI_API_KEY")


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
