"""Bad input in the CLI: refused before anything is sent, in the words the user typed, never a traceback."""
import json
import os
import socket
import subprocess
import sys

from happyhorse.cli import CLI as CLI_SURFACE
from happyhorse.engine.errors import ValidationError, Violation
from happyhorse.engine.fields import FIELDS, Fix, Surface

CLI = [sys.executable, "-m", "happyhorse.cli"]


def run(*args, env=None, timeout=60):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def refused(r, *words):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)


def ledger_rows():
    r = run("jobs", "list", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_base_url_that_is_not_a_url_is_refused_and_nothing_is_recorded():
    r = run("generate", "--provider", "dashscope", "--base-url", "not-a-url", "--mode", "t2v", "--prompt", "x",
            env={"DASHSCOPE_API_KEY": "sk-test"})
    refused(r, "--base-url: 'not-a-url' is not a URL")
    assert ledger_rows() == [], "a refused run must not leave a 'submitting' record"
    r = run("jobs", "collect", "some-task", "--provider", "dashscope", "--base-url", "ftp://x",
            env={"DASHSCOPE_API_KEY": "sk-test"})
    refused(r, "--base-url: 'ftp://x' is not a URL")


def test_happyhorse_home_that_cannot_hold_the_ledger_is_named(tmp_path):
    a_file = tmp_path / "home-is-a-file"
    a_file.write_text("x")
    for home, why in ((a_file, "is a file, not a folder"), ("/proc/self", "No such file or directory")):
        r = run("generate", "--mode", "t2v", "--prompt", "x", "--duration", "3", env={"HAPPYHORSE_HOME": str(home)})
        refused(r, f"HAPPYHORSE_HOME={home}", why, "Nothing was sent")
        refused(run("jobs", "list", env={"HAPPYHORSE_HOME": str(home)}), f"HAPPYHORSE_HOME={home}")


def test_simulate_on_a_port_in_use_says_so():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run("simulate", "--port", str(port))
    refused(r, f"--port {port}: cannot serve there", "--port 0")


def test_config_env_naming_a_missing_file_is_an_error(tmp_path):
    missing = tmp_path / "nope.toml"
    r = run("generate", "--mode", "t2v", "--prompt", "x", "--duration", "3", env={"HAPPYHORSE_CONFIG": str(missing)})
    refused(r, f"HAPPYHORSE_CONFIG={missing}", "does not exist")
    refused(run("generate", "--mode", "t2v", "--prompt", "x", env={"HAPPYHORSE_CONFIG": str(tmp_path)}),
            "is a folder")


def test_validation_names_the_options_as_typed():
    r = run("generate", "--provider", "dashscope", "--mode", "i2v", "--prompt", "x", "--duration", "20",
            "--aspect-ratio", "1:1")
    refused(r, "--image: image-to-video needs exactly one first-frame image; add --image",
            "--duration: 20 is out of range", "--aspect-ratio: does not apply to image-to-video", "leave out "
            "--aspect-ratio")
    for canonical in ("first_frame", "duration_s", "aspect_ratio", "connect one", "leave it empty"):
        assert canonical not in r.stderr, (canonical, r.stderr)
    r = run("generate", "--provider", "dashscope", "--mode", "t2v", "--prompt", "x", "--video", "https://a/b.mp4",
            "--audio-setting", "origin")
    refused(r, "--video: only applies to video edit, not text-to-video; drop --video",
            "--audio-setting: only applies to video edit; leave out --audio-setting")


def test_every_engine_field_has_a_cli_name_and_nodes_can_word_their_own():
    assert set(FIELDS) <= set(CLI_SURFACE.names), set(FIELDS) - set(CLI_SURFACE.names)
    err = ValidationError([Violation("first_frame", "image-to-video needs exactly one first-frame image", Fix.SUPPLY),
                           Violation("reference_images[2]", "is 100x100; upscale it")])
    node = Surface(names={"first_frame": "image", "reference_images": "references"})
    assert err.render(node).splitlines()[1:] == [
        "  - image: image-to-video needs exactly one first-frame image; connect one",
        "  - references #2: is 100x100; upscale it"]
    assert "first_frame: image-to-video needs exactly one first-frame image; connect one" in str(err)


def test_upload_errors_name_the_options_as_typed(tmp_path):
    from tests.conftest import png_bytes

    image = tmp_path / "first.png"
    image.write_bytes(png_bytes(800, 600))
    r = run("generate", "--provider", "getimg", "--mode", "i2v", "--image", str(image), "--prompt", "x",
            "--duration", "3")
    refused(r, "no upload bucket is configured to put the --image file on")
    r = run("generate", "--provider", "dashscope", "--mode", "i2v", "--image", str(image), "--prompt", "x",
            "--duration", "3", "--upload", "s3", env={"DASHSCOPE_API_KEY": "sk-test"})
    refused(r, "--upload 's3' was asked for the --image, but no bucket is configured")
    assert "first_frame" not in r.stderr and ledger_rows() == []
