"""Never lose or double-pay a job: reuse, attach after a crash (SIGKILL), refuse to guess after an uncertain submit."""
import os
import signal
import subprocess
import sys
import time

import av
import pytest

from happyhorse.engine.errors import SubmitUncertain
from happyhorse.engine.ledger import Ledger
from happyhorse.engine.request import GenerationRequest
from happyhorse.engine.runner import JobRunner, RunOptions
from happyhorse.providers.registry import all_caps, resolve_endpoint
from tests.contract.helpers import http, stats

CLI = [sys.executable, "-m", "happyhorse.cli"]


@pytest.fixture
def runner(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test")
    return JobRunner(resolve_endpoint("dashscope", base_url=sim.base_url("dashscope")),
                     ledger=Ledger(tmp_path / "ledger.sqlite3"), all_caps=all_caps())


REQ = GenerationRequest(mode="t2v", prompt="a horse", duration_s=3, seed=11)


async def test_identical_request_reuses_finished_video(runner, sim, tmp_path):
    first = await runner.run(REQ, RunOptions(out_dir=str(tmp_path / "a")))
    again = await runner.run(REQ, RunOptions(out_path=str(tmp_path / "b" / "copy.mp4")))
    assert again.origin == "reused" and again.cost_usd == 0 and again.task_id == first.task_id
    assert open(again.path, "rb").read() == open(first.path, "rb").read()
    assert stats(sim)["submissions"] == {"dashscope": 1}


async def test_changed_seed_or_force_new_is_a_new_job(runner, sim, tmp_path):
    await runner.run(REQ, RunOptions(out_dir=str(tmp_path)))
    other = await runner.run(REQ.with_(seed=12), RunOptions(out_dir=str(tmp_path)))
    forced = await runner.run(REQ, RunOptions(out_dir=str(tmp_path), force_new=True))
    assert other.origin == "new" and forced.origin == "new"
    assert stats(sim)["submissions"] == {"dashscope": 3}


async def test_deleted_file_is_collected_again_not_repaid(runner, sim, tmp_path):
    first = await runner.run(REQ, RunOptions(out_dir=str(tmp_path)))
    os.unlink(first.path)
    again = await runner.run(REQ, RunOptions(out_dir=str(tmp_path)))
    assert again.origin == "refetched" and os.path.isfile(again.path)
    assert stats(sim)["submissions"] == {"dashscope": 1}


async def test_uncertain_submit_is_not_silently_repaid(runner, sim, tmp_path):
    # The connection drops while the submit is in flight: the host never took it (DashScope's task list shows
    # nothing). Still nothing is re-sent on its own; the user decides, and --new submits once.
    http("POST", sim.url + "/_sim/faults", {"provider": "dashscope", "stage": "submit", "kind": "drop"})
    with pytest.raises(SubmitUncertain):
        await runner.run(REQ, RunOptions(out_dir=str(tmp_path)))
    with pytest.raises(SubmitUncertain) as err:
        await runner.run(REQ, RunOptions(out_dir=str(tmp_path)))
    assert "force a new generation" in str(err.value) and "lists no task" in str(err.value)
    assert stats(sim)["submissions"] == {}
    forced = await runner.run(REQ, RunOptions(out_dir=str(tmp_path), force_new=True))
    assert forced.origin == "new" and stats(sim)["submissions"] == {"dashscope": 1}


def _start_simulator(env):
    proc = subprocess.Popen(CLI + ["simulate", "--control", "--port", "0", "--queue-s", "1", "--process-s", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    url = proc.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), url
    return proc, url


def test_sigkill_while_polling_then_rerun_collects_same_job(tmp_path):
    env = {**os.environ, "DASHSCOPE_API_KEY": "sk-crash-test", "HAPPYHORSE_HOME": str(tmp_path / "home")}
    sim_proc, url = _start_simulator(env)
    try:
        out = tmp_path / "clip.mp4"
        cmd = CLI + ["generate", "--provider", "dashscope", "--base-url", url + "/dashscope", "--mode", "t2v",
                     "--prompt", "crash test", "--duration", "3", "--seed", "5", "--out", str(out)]
        victim = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.time() + 30
        line = ""
        while time.time() < deadline and not line.startswith(("queued", "running")):
            line = victim.stderr.readline()
        assert line.startswith(("queued", "running")), "the CLI never started polling"
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        assert victim.returncode == -signal.SIGKILL and not out.exists()

        rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
        assert rerun.returncode == 0, rerun.stderr
        assert "attached" in rerun.stdout
        with av.open(str(out)) as c:
            assert c.streams.video[0].codec_context.name == "h264" and len(c.streams.audio) == 1
        assert http("GET", url + "/_sim/stats")[1]["submissions"] == {"dashscope": 1}
        assert not list(tmp_path.glob("*.part")), "a partial download was left behind"
    finally:
        sim_proc.terminate()
        sim_proc.wait(10)


async def test_running_timeout_keeps_the_job_collectable(runner, sim, tmp_path):
    from happyhorse.engine.errors import JobTimeout

    http("POST", sim.url + "/_sim/faults", {"provider": "dashscope", "stage": "job", "kind": "slow", "seconds": 3})
    with pytest.raises(JobTimeout) as err:
        await runner.run(REQ, RunOptions(out_dir=str(tmp_path), timeout_s=0.5))
    assert "not cancelled" in str(err.value) and "jobs collect" in str(err.value)
    assert not stats(sim)["jobs"][err.value.task_id]["canceled"]
    # Queueing does not count against the running timeout, and the same request later attaches to the job.
    again = await runner.run(REQ, RunOptions(out_dir=str(tmp_path)))
    assert again.origin == "attached" and again.task_id == err.value.task_id
    assert stats(sim)["submissions"] == {"dashscope": 1}


async def test_two_identical_requests_at_once_pay_once(runner, sim, tmp_path):
    import asyncio

    first, second = await asyncio.gather(runner.run(REQ.with_(seed=21), RunOptions(out_dir=str(tmp_path / "a"))),
                                         runner.run(REQ.with_(seed=21), RunOptions(out_dir=str(tmp_path / "b"))))
    assert {first.origin, second.origin} == {"new", "attached"} and first.task_id == second.task_id
    assert stats(sim)["submissions"] == {"dashscope": 1}


async def test_process_died_mid_submit_is_not_silently_repaid(runner, sim, tmp_path):
    import time as _time

    # A 'submitting' record left behind by a process killed during the POST, older than any live submit.
    ledger_id = runner.ledger.create(REQ.with_(seed=22), "dashscope", runner.endpoint.base_url)
    with runner.ledger._connect() as db:
        # untouched since (a live submit waiting on a busy host touches its record: dedupe reads updated_at)
        db.execute("UPDATE jobs SET created_at=?, updated_at=? WHERE id=?",
                   (_time.time() - 600, _time.time() - 600, ledger_id))
    with pytest.raises(SubmitUncertain) as err:
        await runner.run(REQ.with_(seed=22), RunOptions(out_dir=str(tmp_path)))
    assert "never got an answer" in str(err.value)
    assert stats(sim)["submissions"] == {}


async def test_frames_come_from_the_download_check_and_a_reused_file_leaves_them_to_the_caller(runner, tmp_path):
    import torch
    from happyhorse.comfy.tensors import FrameCollector, FrameLimits, decode_video_frames

    limits = FrameLimits(frame_step=6)
    fetched = FrameCollector(limits)
    first = await runner.run(REQ.with_(seed=12), RunOptions(out_dir=str(tmp_path), frames=fetched))
    assert torch.equal(fetched.frames().frames, decode_video_frames(first.path, limits).frames)
    reused = FrameCollector(limits)
    again = await runner.run(REQ.with_(seed=12), RunOptions(out_dir=str(tmp_path), frames=reused))
    assert again.origin == "reused" and reused.frames() is None    # nothing downloaded: the node decodes

