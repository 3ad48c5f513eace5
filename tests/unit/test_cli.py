"""The `happyhorse` command as a user runs it: exit codes, outputs, defaults."""
import json
import os
import subprocess
import sys

import av

CLI = [sys.executable, "-m", "happyhorse.cli"]


def run(*args, env=None, timeout=120):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_generate_on_simulator_writes_the_file(tmp_path):
    out = tmp_path / "clip.mp4"
    r = run("generate", "--provider", "simulator", "--mode", "t2v", "--prompt", "a horse on a beach",
            "--resolution", "720p", "--aspect-ratio", "16:9", "--duration", "3", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["path"] == str(out) and result["provider"] == "simulator" and result["mode"] == "t2v"
    assert result["billed_seconds"] == 3 and result["cost_usd"] == 0 and result["task_id"]
    with av.open(str(out)) as c:
        assert (c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height) == (1280, 720)


def test_estimate_prints_the_issue_example():
    r = run("estimate", "--provider", "dashscope", "--version", "1.0", "--mode", "t2v", "--resolution", "1080p",
            "--duration", "10")
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "2.40 USD"
    j = json.loads(run("estimate", "--provider", "dashscope", "--version", "1.0", "--mode", "t2v",
                       "--resolution", "1080p", "--duration", "10", "--json").stdout)
    assert j["usd"] == 2.4 and j["billed_seconds"] == 10 and j["usd_per_second"] == 0.24


def test_version_defaults_to_newest_the_provider_offers():
    # AI/ML API documents only 1.0; edit exists only on 1.0 anywhere.
    assert run("estimate", "--provider", "aimlapi", "--mode", "t2v", "--duration", "3").returncode == 0
    r = run("estimate", "--provider", "dashscope", "--mode", "edit", "--video-duration", "8", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["version"] == "1.0"
    assert json.loads(run("estimate", "--provider", "dashscope", "--mode", "t2v", "--json").stdout)["version"] == "1.1"


def test_bad_input_is_refused_before_a_key_is_needed():
    r = run("generate", "--provider", "dashscope", "--mode", "t2v", "--prompt", "x", "--duration", "20")
    assert r.returncode == 2 and "duration_s" in r.stderr and "3-15" in r.stderr
    r = run("generate", "--provider", "dashscope", "--mode", "t2v", "--prompt", "x", "--duration", "5")
    assert r.returncode == 2 and "DASHSCOPE_API_KEY" in r.stderr


def test_simulate_prints_its_base_url():
    proc = subprocess.Popen(CLI + ["simulate", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        import urllib.request
        with urllib.request.urlopen(url + "/_sim/stats") as resp:
            assert json.loads(resp.read())["submissions"] == {}
    finally:
        proc.terminate()
        proc.wait(10)
