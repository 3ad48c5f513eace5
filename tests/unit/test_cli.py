"""The `happyhorse` command as a user runs it: exit codes, outputs, defaults."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import av
from happyhorse.simulator.core import SimTiming

CLI = [sys.executable, "-m", "happyhorse.cli"]
ROOT = Path(__file__).resolve().parents[2]


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
    assert r.returncode == 2 and "--duration: " in r.stderr and "3-15" in r.stderr
    r = run("generate", "--provider", "dashscope", "--mode", "t2v", "--prompt", "x", "--duration", "5")
    assert r.returncode == 2 and "DASHSCOPE_API_KEY" in r.stderr


def test_simulate_prints_its_base_url():
    proc = subprocess.Popen(CLI + ["simulate", "--port", "0", "--control"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        import urllib.request
        with urllib.request.urlopen(url + "/_sim/stats") as resp:
            assert json.loads(resp.read())["submissions"] == {}
    finally:
        proc.terminate()
        proc.wait(10)


def test_no_arguments_prints_help():
    r = run()
    assert r.returncode == 0 and r.stdout.startswith("usage: happyhorse")
    assert all(cmd in r.stdout for cmd in ("generate", "estimate", "jobs", "providers", "simulate", "demo"))


def test_version():
    r = run("--version")
    from importlib.metadata import version
    assert r.returncode == 0 and r.stdout.strip() == f"happyhorse {version('comfyui-happyhorse')}"


def test_jobs_subcommands_have_help():
    listing = run("jobs", "--help").stdout
    for sub in ("list", "show", "collect"):
        assert f"    {sub} " in listing                         # each listed with a line of help
        page = run("jobs", sub, "--help")
        assert page.returncode == 0 and "usage: happyhorse jobs " + sub in page.stdout
    assert "the provider's task id" in run("jobs", "collect", "--help").stdout


def test_providers_has_a_header_and_keeps_credits_out_of_usd():
    lines = run("providers").stdout.splitlines()
    header = lines[0].split()
    assert header[:3] == ["PROVIDER", "VERSION", "MODES"]
    usd_at, credits_at = lines[0].index("USD/S"), lines[0].index("CREDITS/S")
    rows = {tuple(line.split()[:2]): line for line in lines[1:]}
    apiframe = rows[("apiframe", "1.1")]
    assert "cr" not in apiframe[usd_at:credits_at] and apiframe[usd_at:credits_at].strip() == "unpublished"
    assert apiframe[credits_at:].split()[:3] == ["24", "/", "31"]
    assert rows[("dashscope", "1.0")][usd_at:credits_at].strip() == "0.14 / 0.24"
    assert rows[("simulator", "1.1")][usd_at:credits_at].strip() == "free"
    data = json.loads(run("providers", "--json").stdout)
    frame = next(r for r in data if (r["provider"], r["version"]) == ("apiframe", "1.1"))
    assert frame["usd_per_second"] == {"720p": None, "1080p": None}
    assert frame["credits_per_second"] == {"720p": 24, "1080p": 31}


def _slow_generate(tmp_path, *extra):
    proc = subprocess.Popen(CLI + ["generate", "--provider", "simulator", "--mode", "t2v", "--prompt", "slow horse",
                                   "--duration", "3", "--out", str(tmp_path / "clip.mp4"), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HAPPYHORSE_SIM_QUEUE_S": "30"})
    for line in proc.stderr:                  # progress lines (not a terminal: one per change)
        if line.startswith("queued"):
            return proc
    raise AssertionError(f"no progress line; rc={proc.wait()}")


def test_ctrl_c_exits_130_without_a_traceback(tmp_path):
    proc = _slow_generate(tmp_path)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "cancelled at the provider" in err


def test_second_ctrl_c_quits_at_once_with_130(tmp_path):
    proc = _slow_generate(tmp_path)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err


def test_simulate_background_returns_its_url_and_stop_stops_it(tmp_path):
    import urllib.error
    import urllib.request

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {"TMPDIR": str(tmp)}
    # capture_output waits for the end of stdout, as a shell's $(...) does: it returns only if the server let go.
    started = run("simulate", "--background", "--control", env=env, timeout=60)
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip()
    with urllib.request.urlopen(url + "/_sim/stats") as resp:
        assert json.loads(resp.read())["submissions"] == {}
    made = run("generate", "--provider", "dashscope", "--base-url", url + "/dashscope", "--mode", "t2v",
               "--prompt", "a horse", "--duration", "3", "--out", str(tmp_path / "clip.mp4"), "--quiet",
               env={"DASHSCOPE_API_KEY": "sk-any"})
    assert made.returncode == 0, made.stderr
    assert run("simulate", "--background", env=env).stdout.strip() == url      # the running one is reused
    assert any(n.startswith("happyhorse-sim-") for n in os.listdir(tmp))
    stopped = run("simulate", "--stop", env=env)
    assert stopped.returncode == 0 and url in stopped.stderr
    try:
        urllib.request.urlopen(url + "/_sim/stats", timeout=5)
        raise AssertionError("still serving after --stop")
    except urllib.error.URLError:
        pass
    assert not any(n.startswith("happyhorse-sim-") for n in os.listdir(tmp)), "its videos went with it"
    again = run("simulate", "--stop", env=env)
    assert again.returncode == 2 and "No background simulator is running" in again.stderr


def test_estimate_needs_no_files_and_no_bucket_on_any_host(tmp_path):
    def priced(*args):
        r = run("estimate", *args, "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    # getimg.ai and APIXO take public URLs only and no bucket is configured: the price comes from counts.
    assert priced("--provider", "getimg", "--mode", "i2v", "--duration", "5")["usd"] == 0.7
    assert priced("--provider", "getimg", "--mode", "r2v", "--references", "3", "--duration", "4")["usd"] == 0.56
    image = tmp_path / "ref.png"
    image.write_bytes(b"not even an image: the estimate never reads it")
    assert priced("--provider", "apixo", "--mode", "r2v", "--image", str(image), "--image", "https://x.invalid/b.png",
                  "--resolution", "1080p", "--duration", "4")["usd"] == 0.9
    edit = priced("--provider", "apixo", "--mode", "edit", "--video", str(ROOT / "workflows/input/happyhorse_source.mp4"),
                  "--references", "2")
    assert edit["billed_seconds"] == 7.0 and edit["usd"] == 0.875           # 3.5 s source, input + output
    assert priced("--provider", "apixo", "--mode", "edit", "--video-duration", "20")["billed_seconds"] == 30


def test_estimate_still_refuses_what_the_host_would():
    r = run("estimate", "--provider", "apiframe", "--version", "1.1", "--mode", "r2v", "--references", "1")
    assert r.returncode == 2 and "1 given" in r.stderr and "2-9" in r.stderr and "Traceback" not in r.stderr
    r = run("estimate", "--provider", "apixo", "--mode", "edit", "--video", "https://x.invalid/a.mp4")
    assert r.returncode == 2 and "--video-duration" in r.stderr
    r = run("estimate", "--provider", "dashscope", "--mode", "r2v", "--references", "2", "--image", "a.png")
    assert r.returncode == 2 and "--references" in r.stderr


def test_demo_reports_each_video_as_it_is_ready_with_absolute_paths(tmp_path):
    r = subprocess.run(CLI + ["demo", "--out-dir", "out"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env={**os.environ, "HAPPYHORSE_SIM_PROCESS_S": "0.5"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("Making 3 videos")
    made = [line.split() for line in lines[1:]]
    assert sorted(m[0] for m in made) == ["i2v", "r2v", "t2v"]
    for m in made:
        path = Path(m[1])
        assert path.is_absolute() and path.parent == tmp_path / "out" and path.is_file()
    ready_at = [float(m[-2].strip("(")) for m in made]
    assert ready_at == sorted(ready_at), "listed in the order they finished, each when it was ready"


def test_a_reader_that_leaves_early_gets_no_traceback():
    # `happyhorse providers | head -1`: here the reader is gone before the first line is written.
    proc = subprocess.Popen(CLI + ["providers"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(60) == 141 and "Traceback" not in err, err


def _interrupt_while_running(tmp_path, *args, env=None):
    """Start a generate whose job runs for 30 s, Ctrl-C it once it runs; (exit code, stderr)."""
    proc = subprocess.Popen(CLI + ["generate", "--mode", "t2v", "--prompt", "a horse that takes its time",
                                   "--duration", "3", "--out", str(tmp_path / "clip.mp4"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HAPPYHORSE_SIM_QUEUE_S": "0.2", "HAPPYHORSE_SIM_PROCESS_S": "30",
                                 **(env or {})})
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("running"):
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, "".join(seen) + err


def test_in_process_simulator_jobs_are_described_truthfully(tmp_path):
    # Running jobs cannot be cancelled (DashScope's rule, which the simulator follows), so this one goes on,
    # inside a process that is about to end: no bill, and nothing to collect later.
    code, err = _interrupt_while_running(tmp_path, "--provider", "simulator")
    assert code == 130, err
    assert "refused to cancel it" in err and "run the request again" in err
    assert "billed" not in err and "jobs collect" not in err
    r = run("generate", "--provider", "simulator", "--mode", "t2v", "--prompt", "slow", "--duration", "3",
            "--timeout", "1", "--out", str(tmp_path / "t.mp4"), "--quiet", env={"HAPPYHORSE_SIM_PROCESS_S": "30"})
    assert r.returncode == 2 and "still running after 1 s" in r.stderr and "run the request again" in r.stderr
    assert "billed" not in r.stderr and "jobs collect" not in r.stderr
    gone = run("jobs", "collect", "no-such-task", "--provider", "simulator")
    assert gone.returncode == 2 and "inside this process" in gone.stderr and "Traceback" not in gone.stderr


def test_a_simulator_elsewhere_is_free_and_collectable_where_it_runs(tmp_path, sim):
    url = sim.base_url("dashscope")
    sim.core.timing = SimTiming(0.2, 30)
    code, err = _interrupt_while_running(tmp_path, "--provider", "simulator", "--base-url", url)
    assert code == 130 and "billed" not in err, err
    assert f"--provider simulator --base-url {url}`" in err


def test_a_paid_host_still_says_it_may_bill_and_how_to_collect(tmp_path, sim):
    sim.core.timing = SimTiming(0.2, 30)
    code, err = _interrupt_while_running(tmp_path, "--provider", "dashscope", "--base-url", sim.base_url("dashscope"),
                                         env={"DASHSCOPE_API_KEY": "sk-any"})
    assert code == 130, err
    assert "may finish and be billed" in err and "jobs collect" in err and "--provider dashscope" in err


def test_fit_repairs_only_what_breaks_a_limit_and_says_so(tmp_path):
    from PIL import Image

    small, fine, wide = tmp_path / "small.png", tmp_path / "fine.png", tmp_path / "wide.png"
    Image.new("RGB", (200, 150), (200, 60, 40)).save(small)
    Image.new("RGB", (640, 480), (40, 60, 200)).save(fine)
    Image.new("RGB", (1500, 400), (40, 160, 60)).save(wide)        # 3.75:1, beyond 2.5:1
    base = ["generate", "--provider", "simulator", "--duration", "3", "--quiet"]

    refused = run(*base, "--mode", "i2v", "--image", str(small), "--out", str(tmp_path / "a.mp4"))
    assert refused.returncode == 2 and "200x150" in refused.stderr and "--fit: add it" in refused.stderr
    fixed = run(*base, "--mode", "i2v", "--image", str(small), "--out", str(tmp_path / "a.mp4"), "--fit")
    assert fixed.returncode == 0, fixed.stderr
    assert "fit: first_frame: upscaled 200x150 -> 400x300 to reach the 300 px minimum side" in fixed.stderr
    with av.open(str(tmp_path / "a.mp4")) as c:
        assert (c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height) == (960, 720)

    untouched = run(*base, "--mode", "r2v", "--prompt", "[Image 1] and [Image 2]", "--image", str(fine),
                    "--image", str(wide), "--out", str(tmp_path / "b.mp4"), "--fit", "pad")
    assert untouched.returncode == 0, untouched.stderr
    notes = [line for line in untouched.stderr.splitlines() if line.startswith("fit: ")]
    assert notes == ["fit: reference_images[2]: padded 1500x400 -> 1500x600 to the allowed range 1:2.5..2.5:1"]
    bad = run(*base, "--mode", "i2v", "--image", str(fine), "--fit-ratio", "16:9")
    assert bad.returncode == 2 and "--fit crop or --fit pad" in bad.stderr
