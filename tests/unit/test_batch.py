"""`happyhorse batch` against several simulated hosts: every line checked first, concurrent runs, results.jsonl,
a rerun after Ctrl-C that submits nothing twice, and the budget over the batch as a whole."""
import json
import signal
import subprocess
import sys
import time

import pytest

from benchmarks.simctl import sim_stats
from happyhorse.engine.batch import load_batch
from happyhorse.engine.errors import HappyHorseError
from happyhorse.simulator.core import SimTiming
from happyhorse.simulator.server import SimulatorServer
from tests.conftest import png_bytes
from tests.unit.test_budget import write_config
from tests.unit.test_cli import CLI, run

KEYS = {"dashscope": "DASHSCOPE_API_KEY", "apixo": "APIXO_API_KEY", "getimg": "GETIMG_API_KEY"}


def env_for(sim, *names):
    env = {}
    for name in names:
        env[KEYS[name]] = f"sk-batch-{name}"
        env[f"HAPPYHORSE_{name.upper()}_BASE_URL"] = sim.base_url(name)
    return env


def write_batch(tmp_path, *lines):
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines) + "\n")
    return path


def results(out_dir):
    return [json.loads(x) for x in (out_dir / "results.jsonl").read_text().splitlines()]


def test_every_line_is_checked_before_anything_is_sent(sim, tmp_path, monkeypatch):
    for k, v in env_for(sim, "dashscope").items():
        monkeypatch.setenv(k, v)
    (tmp_path / "a.png").write_bytes(png_bytes(640, 480))
    path = write_batch(tmp_path,
                       {"provider": "dashscope", "mode": "t2v", "prompt": "fine", "duration": 3},
                       "# a comment line",
                       {"provider": "dashscope", "mode": "t2v", "prompt": "x", "durration": 3},
                       {"provider": "dashscope", "mode": "r2v", "image": "a.png", "prompt": "[Image 2] waves"},
                       '{"mode": "t2v", "prompt": ',
                       {"provider": "getimg", "mode": "t2v", "prompt": "no key here", "version": "1.0"},
                       {"provider": "dashscope", "prompt": "no mode"})
    with pytest.raises(HappyHorseError) as exc:
        load_batch(path, tmp_path / "out")
    msg = str(exc.value)
    assert "5 line(s) need fixing; nothing was sent" in msg
    assert "line 3: unknown key 'durration'" in msg
    assert "line 4: refused before sending" in msg and "[Image 2]" in msg and "only 1 reference image is given" in msg
    assert "line 5: not valid JSON" in msg
    assert "line 6: No API key for getimg" in msg and "line 7: mode is required" in msg
    assert "line 1" not in msg
    r = run("batch", str(path), "--out-dir", str(tmp_path / "out"))
    assert r.returncode == 2 and "line 3: unknown key" in r.stderr and "Traceback" not in r.stderr
    assert sim_stats(sim.url)["submissions"] == {}


def test_batch_runs_lines_side_by_side_and_writes_results(sim, tmp_path):
    env = env_for(sim, "dashscope", "apixo")
    (tmp_path / "a.png").write_bytes(png_bytes(640, 480))
    path = write_batch(tmp_path,
                       {"provider": "auto", "mode": "t2v", "version": "1.0", "prompt": "one", "duration": 3},
                       {"provider": "dashscope", "mode": "t2v", "prompt": "two", "duration": 3},
                       {"provider": "dashscope", "mode": "i2v", "image": "a.png", "duration": 3,
                        "out": "clips/three.mp4"})
    out = tmp_path / "out"
    r = run("batch", str(path), "--concurrency", "2", "--out-dir", str(out), env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = results(out)
    assert [(x["line"], x["status"], x["provider"]) for x in rows] == [
        (1, "done", "apixo"), (2, "done", "dashscope"), (3, "done", "dashscope")]
    assert rows[2]["path"] == str(tmp_path / "clips" / "three.mp4") and (tmp_path / "clips" / "three.mp4").is_file()
    assert rows[0]["cost_usd"] == pytest.approx(0.375) and all(x["task_id"] for x in rows)
    assert "line    1 apixo: done" in r.stderr and "total: 3 done, 0 running, 0 failed, 0 waiting" in r.stderr
    assert "3 done, 0 failed" in r.stdout
    assert sim_stats(sim.url)["submissions"] == {"apixo": 1, "dashscope": 2}
    # Run again: every line is reused, nothing submitted.
    r = run("batch", str(path), "--out-dir", str(out), env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert [x["origin"] for x in results(out)] == ["reused"] * 3
    assert sim_stats(sim.url)["submissions"] == {"apixo": 1, "dashscope": 2}


def test_rerun_after_ctrl_c_attaches_to_jobs_in_flight(tmp_path):
    """APIXO has no cancel API: Ctrl-C leaves its jobs running; the rerun must follow them, not pay again."""
    with SimulatorServer(timing=SimTiming(queue_s=0.5, process_s=6.0), control=True) as sim:
        env = env_for(sim, "apixo")
        path = write_batch(tmp_path, *({"provider": "apixo", "mode": "t2v", "prompt": f"job {i}", "duration": 3}
                                       for i in range(3)))
        out = tmp_path / "out"
        proc = subprocess.Popen(CLI + ["batch", str(path), "--out-dir", str(out)], env={**__import__("os").environ,
                                **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while sim_stats(sim.url)["submissions"].get("apixo", 0) < 3 and time.time() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode != 0 and "Cancelling" in err
        assert [x["status"] for x in results(out)] == ["cancelled"] * 3
        r = run("batch", str(path), "--out-dir", str(out), env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        assert [(x["status"], x["origin"]) for x in results(out)] == [("done", "attached")] * 3
        assert sim_stats(sim.url)["submissions"] == {"apixo": 3}


def test_the_budget_applies_to_the_batch_as_a_whole(sim, tmp_path):
    env = env_for(sim, "dashscope")
    path = write_batch(tmp_path, *({"provider": "dashscope", "mode": "t2v", "prompt": f"job {i}", "duration": 3}
                                   for i in range(3)))
    r = run("batch", str(path), "--out-dir", str(tmp_path / "o"), "--max-usd", "1.0", env=env)
    # 3 x 0.42 USD = 1.26 USD: each job fits 1.00 on its own, the batch does not.
    assert r.returncode == 2 and "this batch (3 job(s) to pay for, line(s) 1, 2, 3) is estimated at 1.26 USD" \
        in r.stderr and "max_usd limit of 1.00 USD" in r.stderr
    write_config(tmp_path, "[budget]\ndaily_usd = 1.0\n")
    r = run("batch", str(path), "--out-dir", str(tmp_path / "o"), env=env)
    assert r.returncode == 2 and "would add 1.26 USD, over the daily_usd budget of 1.00 USD" in r.stderr
    assert sim_stats(sim.url)["submissions"] == {}
