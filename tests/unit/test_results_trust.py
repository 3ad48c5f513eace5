"""Never the wrong video, never a paid result lost: what is reused must be that very file, an output location is
checked before anything is paid, and a job is collected where it was submitted."""
import hashlib
import json
import os
import subprocess
import sys
import time

import av
import pytest

from happyhorse.engine.errors import ValidationError, VideoGone
from happyhorse.engine.ledger import Ledger
from happyhorse.engine.request import GenerationRequest
from happyhorse.engine.runner import JobRunner, RunOptions
from happyhorse.providers.registry import all_caps, resolve_endpoint
from tests.contract.helpers import stats

CLI = [sys.executable, "-m", "happyhorse.cli"]
REQ = GenerationRequest(mode="t2v", prompt="a horse", duration_s=3, seed=31)


@pytest.fixture
def runner(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test")
    return JobRunner(resolve_endpoint("dashscope", base_url=sim.base_url("dashscope")),
                     ledger=Ledger(tmp_path / "ledger.sqlite3"), all_caps=all_caps())


def cli(sim, *args, cwd, env=None):
    """The CLI as a user runs it, against the simulated DashScope; every run shares one ledger."""
    env = {**os.environ, "DASHSCOPE_API_KEY": "sk-test", **(env or {})}
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


def t2v_args(sim, *extra):
    return ["generate", "--provider", "dashscope", "--base-url", sim.base_url("dashscope"), "--mode", "t2v",
            "--prompt", "a horse", "--duration", "3", "--seed", "7", *extra]


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_reuse_from_another_folder_hands_back_the_earlier_video_not_a_namesake(sim, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    first = cli(sim, *t2v_args(sim, "--out", "clip.mp4", "--json"), cwd=a)
    assert first.returncode == 0, first.stderr
    (b / "clip.mp4").write_bytes(b"an unrelated file that happens to have the same name")
    again = cli(sim, *t2v_args(sim, "--out", "mine.mp4", "--json"), cwd=b)
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["origin"] == "reused" and result["path"] == str(b / "mine.mp4")
    assert (b / "mine.mp4").read_bytes() == (a / "clip.mp4").read_bytes()
    assert stats(sim)["submissions"] == {"dashscope": 1}
    # The ledger keeps the absolute path with the file's size and checksum.
    record = json.loads(cli(sim, "jobs", "list", "--json", cwd=tmp_path).stdout)[-1]
    assert record["local_path"] == str(a / "clip.mp4")
    assert (record["size_bytes"], record["sha256"]) == (os.path.getsize(a / "clip.mp4"), sha256(a / "clip.mp4"))
    assert record["usage"]["output_video_duration"] == 3      # the host's usage record, as it sent it


async def test_a_changed_file_is_not_reused_its_result_is_fetched_again(runner, sim, tmp_path):
    first = await runner.run(REQ, RunOptions(out_path=str(tmp_path / "clip.mp4")))
    original = open(first.path, "rb").read()
    with open(first.path, "wb") as fh:            # the user saved something else under that name
        fh.write(b"x" * len(original))
    again = await runner.run(REQ, RunOptions(out_path=str(tmp_path / "again.mp4")))
    assert again.origin == "refetched" and again.task_id == first.task_id and again.cost_usd == first.cost_usd
    assert open(again.path, "rb").read() == original
    assert stats(sim)["submissions"] == {"dashscope": 1}
    rec = runner.ledger.get(again.ledger_id)
    assert rec.local_path == str(tmp_path / "again.mp4") and rec.sha256 == sha256(again.path)


async def test_a_deleted_file_whose_result_expired_is_said_to_be_gone(runner, sim, tmp_path):
    first = await runner.run(REQ, RunOptions(out_dir=str(tmp_path)))
    os.unlink(first.path)
    with runner.ledger._connect() as db:          # two days later: the provider no longer keeps the result
        db.execute("UPDATE jobs SET created_at=? WHERE id=?", (time.time() - 2 * 86400, first.ledger_id))
    with pytest.raises(VideoGone) as err:
        await runner.run(REQ, RunOptions(out_dir=str(tmp_path)))
    text = str(err.value)
    assert first.task_id in text and "deleted" in text and "--new" in text and "Nothing was submitted" in text
    assert stats(sim)["submissions"] == {"dashscope": 1}


async def test_a_deleted_file_the_provider_no_longer_knows_is_said_to_be_gone(runner, sim, tmp_path):
    first = await runner.run(REQ, RunOptions(out_dir=str(tmp_path)))
    os.unlink(first.path)
    with runner.ledger._connect() as db:          # the host dropped the task (another region, a purge)
        db.execute("UPDATE jobs SET task_id='forgotten-task' WHERE id=?", (first.ledger_id,))
    with pytest.raises(VideoGone) as err:
        await runner.run(REQ, RunOptions(out_dir=str(tmp_path)))
    assert "no longer has it" in str(err.value) and "force a new generation" in str(err.value)
    assert stats(sim)["submissions"] == {"dashscope": 1}


def test_out_naming_an_existing_folder_saves_into_it(sim, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    r = cli(sim, *t2v_args(sim, "--out", str(folder), "--json"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    path = json.loads(r.stdout)["path"]
    assert os.path.dirname(path) == str(folder) and path.endswith(".mp4")
    with av.open(path) as c:
        assert c.streams.video[0].codec_context.name == "h264"


def test_out_that_cannot_be_written_is_refused_before_submitting(sim, tmp_path):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    r = cli(sim, *t2v_args(sim, "--out", str(tmp_path / "notes.txt" / "clip.mp4")), cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cannot be saved" in r.stderr and "notes.txt is a file, not a folder" in r.stderr
    assert stats(sim)["submissions"] == {}
    assert json.loads(cli(sim, "jobs", "list", "--json", cwd=tmp_path).stdout) == []


async def test_unwritable_out_dir_is_refused_by_the_runner_too(runner, sim, tmp_path):
    (tmp_path / "taken").write_text("a file where the folder should be")
    with pytest.raises(ValidationError) as err:
        await runner.run(REQ, RunOptions(out_dir=str(tmp_path / "taken" / "videos")))
    assert err.value.violations[0].field == "out_dir"
    assert stats(sim)["submissions"] == {} and runner.ledger.recent() == []


def test_missing_file_message_says_what_happened(sim, tmp_path):
    first = cli(sim, *t2v_args(sim, "--out", "clip.mp4"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    os.unlink(tmp_path / "clip.mp4")
    again = cli(sim, *t2v_args(sim, "--out", "clip.mp4"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "in flight" not in again.stdout
    assert "was deleted or moved" in again.stdout and "downloaded again, nothing billed" in again.stdout
    assert os.path.isfile(tmp_path / "clip.mp4") and stats(sim)["submissions"] == {"dashscope": 1}


def test_jobs_collect_goes_where_the_job_was_submitted(sim, tmp_path):
    # The configured default for DashScope is a dead local port here, never the real host.
    env = {"HAPPYHORSE_DASHSCOPE_BASE_URL": "http://127.0.0.1:9"}
    first = cli(sim, *t2v_args(sim, "--json"), cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    task_id = json.loads(first.stdout)["task_id"]
    r = cli(sim, "jobs", "collect", task_id, "--out", str(tmp_path / "collected.mp4"), "--json", cwd=tmp_path,
            env=env)
    assert r.returncode == 0, r.stderr
    assert open(tmp_path / "collected.mp4", "rb").read() == open(json.loads(first.stdout)["path"], "rb").read()
    assert stats(sim)["submissions"] == {"dashscope": 1}
