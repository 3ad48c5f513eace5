"""One real ComfyUI for the whole session (start-up takes ~15-20 s), with the pack loaded from this checkout.

Set COMFYUI_DIR (a ComfyUI checkout) and COMFYUI_PYTHON (its venv's python); without COMFYUI_DIR every test
here is skipped and says why.
"""
from __future__ import annotations

import json
import os
import sqlite3
import sys
import uuid
from pathlib import Path

import pytest

from .server import ComfyServer, python_for_comfy, run_prompt

# A fake DashScope key: the dashscope provider runs against a simulator in this process, so the key really
# travels through the nodes, and the tests then look for it everywhere it must not be.
CANARY_KEY = f"sk-hhcanary-{uuid.uuid4().hex}"
SIM_QUEUE_S, SIM_PROCESS_S = "0.3", "1.0"
KEY_ENV_SUFFIXES = ("_API_KEY", "_API_TOKEN")


def pytest_report_header(config) -> str:
    where = os.environ.get("COMFYUI_DIR")
    if not where:
        return "integration: COMFYUI_DIR is not set, so the real-ComfyUI tests are skipped"
    return f"integration: ComfyUI at {where} with {python_for_comfy()}"


@pytest.fixture(scope="session")
def external_sim():
    """A simulator outside ComfyUI, standing in for DashScope's real host (reached with the canary key)."""
    from happyhorse.simulator.core import SimTiming
    from happyhorse.simulator.server import SimulatorServer

    server = SimulatorServer(timing=SimTiming(float(SIM_QUEUE_S), float(SIM_PROCESS_S)), control=True).start()
    yield server
    server.stop()


def own_comfy(tmp_path_factory, name: str, env: dict[str, str] | None = None, **server_args) -> ComfyServer:
    """A ComfyUI (not started) in a fresh base folder, with none of this process's HappyHorse settings or keys:
    its ledger and config live in that folder, plus `env`. Skips when no ComfyUI is given."""
    comfy_dir = os.environ.get("COMFYUI_DIR")
    if not comfy_dir:
        reason = "COMFYUI_DIR is not set: point it at a ComfyUI checkout (and COMFYUI_PYTHON at its python)"
        sys.stderr.write(f"\n[integration] skipped: {reason}\n")
        pytest.skip(reason)
    base = tmp_path_factory.mktemp(name)
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("HAPPYHORSE_") and not k.endswith(KEY_ENV_SUFFIXES)}
    clean.update({
        "HAPPYHORSE_HOME": str(base / "happyhorse-home"),      # keep the CLI defaults away from the user's
        "XDG_CONFIG_HOME": str(base / "xdg-config"),           # no user config file with real keys
        **(env or {}),
    })
    return ComfyServer(Path(comfy_dir), python_for_comfy(), base, clean, **server_args)


@pytest.fixture(scope="session")
def comfy(tmp_path_factory, external_sim):
    server = own_comfy(tmp_path_factory, "comfy", {
        "HAPPYHORSE_SIM_QUEUE_S": SIM_QUEUE_S,
        "HAPPYHORSE_SIM_PROCESS_S": SIM_PROCESS_S,
        "HAPPYHORSE_SIM_CONTROL": "1",                         # inner_sim_url sets timings and reads stats
        "DASHSCOPE_API_KEY": CANARY_KEY,
        "HAPPYHORSE_DASHSCOPE_BASE_URL": external_sim.base_url("dashscope"),
        # A second simulated host, so provider auto has a choice (and somewhere to fail over from).
        "APIXO_API_KEY": f"sk-hhcanary-apixo-{uuid.uuid4().hex}",
        "HAPPYHORSE_APIXO_BASE_URL": external_sim.base_url("apixo"),
    }).start()
    sys.stderr.write(f"\n[integration] ComfyUI up in {server.started_s:.1f} s at {server.url} (base {server.base})\n")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def object_info(comfy) -> dict:
    return comfy.object_info()


def ledger_rows(server: ComfyServer) -> list[dict]:
    if not server.ledger_path.exists():
        return []
    with sqlite3.connect(server.ledger_path) as db:
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute("SELECT * FROM jobs ORDER BY created_at")]
    for r in rows:
        r["history"] = json.loads(r["history"])
    return rows


def t2v_prompt(prompt: str, seed: int, *, provider: str = "simulator", duration: int = 3,
               extra: dict | None = None) -> dict:
    """A minimal API prompt: Text2Video -> SaveVideo."""
    node = {"prompt": prompt, "provider": provider, "provider.version": "1.1",
            "provider.version.resolution": "720p", "provider.version.aspect_ratio": "16:9",
            "provider.version.duration": duration, "seed": seed, "watermark": False, "timeout_s": 600,
            "max_frames": 0, "frame_step": 1, "max_side": 0, "frames_max_mb": 256, **(extra or {})}
    return {"1": {"class_type": "HappyHorsePack.Text2Video", "inputs": node},
            "2": {"class_type": "SaveVideo", "inputs": {"video": ["1", 0], "filename_prefix": "video/hh_test",
                                                        "format": "mp4", "format.codec": "h264"}}}


@pytest.fixture(scope="session")
def inner_sim_url(comfy) -> str:
    """Base URL of the simulator running inside ComfyUI (its control API sets timings, shows cancels)."""
    def find() -> str | None:
        rows = [r for r in ledger_rows(comfy) if r["provider"] == "simulator"]
        return rows[-1]["base_url"].rsplit("/dashscope", 1)[0] if rows else None

    url = find()
    if url is None:
        import asyncio

        result = asyncio.run(run_prompt(comfy, t2v_prompt("warm-up: a horse on a beach", 1)))
        assert result.status == "success", result.error_message()
        url = find()
    assert url, "the ledger shows no simulator job"
    return url
