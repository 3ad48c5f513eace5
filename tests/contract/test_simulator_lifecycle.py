"""The simulator cleans up after itself: videos go with it, old jobs and inputs do not pile up."""
import os
import subprocess
import sys
import time

import pytest
from happyhorse.engine.errors import ProviderError
from happyhorse.engine.request import GenerationRequest, MediaInput
from happyhorse.engine.runner import RunOptions
from happyhorse.simulator.core import WORKDIR_PREFIX, SimTiming
from happyhorse.simulator.server import SimulatorServer
from tests.conftest import png_bytes

from .helpers import make_runner, stats

T2V = GenerationRequest(mode="t2v", prompt="a horse, then gone", duration_s=3)


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-key-123")


def sim_dirs(root) -> set[str]:
    return {n for n in os.listdir(root) if n.startswith(WORKDIR_PREFIX)}


async def test_stopping_the_simulator_removes_its_videos(tmp_path):
    server = SimulatorServer(timing=SimTiming(0.1, 0.2)).start()
    result = await make_runner(server, tmp_path, "dashscope").run(T2V, RunOptions(out_dir=str(tmp_path / "out")))
    workdir = server.core.workdir
    assert os.path.isfile(os.path.join(workdir, f"{result.task_id}.mp4"))
    server.stop()
    assert not os.path.exists(workdir)
    assert os.path.isfile(result.path), "the downloaded copy is the user's and stays"


def test_a_cli_run_leaves_nothing_in_the_temp_folder(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    r = subprocess.run([sys.executable, "-m", "happyhorse.cli", "generate", "--provider", "simulator", "--mode", "t2v",
                        "--prompt", "a horse", "--duration", "3", "--out", str(tmp_path / "clip.mp4"), "--quiet"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "TMPDIR": str(tmp)})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "clip.mp4").is_file() and sim_dirs(tmp) == set()


def test_a_folder_left_by_a_killed_process_is_removed_by_the_next_simulator(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)      # re-read TMPDIR
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    orphan = tmp_path / f"{WORKDIR_PREFIX}{dead}-abc"
    orphan.mkdir()
    (orphan / "old.mp4").write_bytes(b"x" * 1000)
    alive = tmp_path / f"{WORKDIR_PREFIX}{os.getpid()}-keep"      # this process is alive: not touched
    alive.mkdir()
    server = SimulatorServer().start()
    try:
        assert not orphan.exists() and alive.exists()
        assert os.path.dirname(server.core.workdir) == str(tmp_path)
    finally:
        server.stop()


async def test_old_jobs_and_their_inputs_are_dropped(tmp_path):
    server = SimulatorServer(timing=SimTiming(0.1, 0.2), keep_s=2.0, control=True).start()
    try:
        runner = make_runner(server, tmp_path, "dashscope")
        first = MediaInput.image_bytes(png_bytes(640, 480), "first.png")
        i2v = GenerationRequest(mode="i2v", prompt="push in", first_frame=first, duration_s=3)
        old = await runner.run(i2v, RunOptions(out_dir=str(tmp_path / "out")))
        assert server.core.jobs[old.task_id].spec.first_frame == first.data       # held while the job is kept
        old_video = os.path.join(server.core.workdir, f"{old.task_id}.mp4")
        assert os.path.isfile(old_video)
        time.sleep(2.1)
        new = await runner.run(T2V.with_(prompt="a newer horse"), RunOptions(out_dir=str(tmp_path / "out")))
        assert old.task_id not in server.core.jobs, "the job and the input bytes it held are dropped"
        assert old.task_id not in stats(server)["jobs"] and new.task_id in stats(server)["jobs"]
        assert not os.path.exists(old_video)
        with pytest.raises(ProviderError, match="does not know task"):
            await runner.collect(old.task_id, opts=RunOptions(out_dir=str(tmp_path / "again")))
    finally:
        server.stop()
