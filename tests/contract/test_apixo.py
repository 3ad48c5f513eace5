"""The APIXO adapter against the simulated APIXO: the {code, message, data} envelope, resultJson as a string,
input.mode words, all four modes with URL media, and errors (including a non-200 code inside an HTTP 200)."""
import json

import pytest

from happyhorse.cli import main as cli_main
from happyhorse.engine.errors import ConfigError, JobFailed, ProviderError, ValidationError
from happyhorse.engine.http import HttpReply
from happyhorse.engine.request import MediaInput
from happyhorse.providers.registry import get_adapter
from happyhorse.simulator.video import ClipSpec, render_clip
from tests.conftest import png_bytes
from tests.contract import helpers
from tests.contract.helpers import http, image_url, make_runner, probe, put_blob, run, stats

NAME = "apixo"
KEY = "apixo-test-key-77"
SUBMIT_PATH = "/apixo/generateTask/happyHorse"
STATUS_PATH = "/apixo/statusTask/happyHorse"
ADAPTER = get_adapter(NAME)


@pytest.fixture
def runner(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("APIXO_API_KEY", KEY)
    return make_runner(sim, tmp_path, NAME)


def sent(sim, method="POST"):
    return helpers.sent(sim, NAME, method, faults=False)


async def test_t2v_end_to_end_and_exact_request(runner, sim, tmp_path):
    res = await run(runner, tmp_path, mode="t2v", prompt="a cinematic rainy night", aspect_ratio="16:9", seed=7)
    p = probe(res.path)
    assert (p["codec"], p["w"], p["h"], p["fps"], p["audio"]) == ("h264", 1280, 720, 24.0, True)
    assert abs(p["dur"] - 3) < 0.1
    assert res.cost_usd == pytest.approx(3 * 0.125)
    post = sent(sim)[0]
    assert post["path"] == SUBMIT_PATH and post["headers"]["Authorization"] == "***"
    assert post["body"] == {"request_type": "async", "input": {
        "mode": "text-to-video", "prompt": "a cinematic rainy night", "resolution": "720p", "ratio": "16:9",
        "duration": 3, "watermark": False, "seed": 7}}
    assert {r["path"] for r in sent(sim, "GET")} == {f"{STATUS_PATH}?taskId={res.task_id}"}


async def test_i2v_sends_one_image_url_and_no_ratio(runner, sim, tmp_path):
    url = image_url(sim, "first.png", 600, 800)
    res = await run(runner, tmp_path, mode="i2v", first_frame=MediaInput.from_url(url, "image"), watermark=True)
    assert (res.width, res.height) == (720, 960)
    assert sent(sim)[0]["body"]["input"] == {"mode": "image-to-video", "resolution": "720p", "duration": 3,
                                             "watermark": True, "image_urls": [url]}
    assert stats(sim)["blob_downloads"] == {"first.png": 1}


async def test_r2v_sends_reference_urls(runner, sim, tmp_path):
    urls = [image_url(sim, f"ref{i}.png", 500, 500, color=(60 * i, 0, 0)) for i in range(3)]
    res = await run(runner, tmp_path, mode="r2v", prompt="[Image 1] with [Image 2] and [Image 3]",
                    aspect_ratio="4:3", reference_images=tuple(MediaInput.from_url(u, "image") for u in urls))
    assert (res.width, res.height) == (960, 720)
    inp = sent(sim)[0]["body"]["input"]
    assert inp["mode"] == "reference-to-video" and inp["image_urls"] == urls and inp["ratio"] == "4:3"
    assert stats(sim)["blob_downloads"] == {f"ref{i}.png": 1 for i in range(3)}


async def test_edit_sends_video_url_and_audio_setting(runner, sim, tmp_path):
    src = tmp_path / "src.mp4"
    render_clip(ClipSpec(width=640, height=480, duration_s=4, prompt="source"), str(src))
    video = put_blob(sim, "src.mp4", src.read_bytes(), "video/mp4")
    ref = image_url(sim, "style.png", 500, 500)
    res = await run(runner, tmp_path, mode="edit", prompt="make it night", duration_s=None, audio_setting="origin",
                    source_video=MediaInput.from_url(video, "video"),
                    reference_images=(MediaInput.from_url(ref, "image"),))
    assert (res.width, res.height) == (960, 720) and abs(res.duration_s - 4) < 0.1
    assert sent(sim)[0]["body"]["input"] == {"mode": "video-edit", "prompt": "make it night", "resolution": "720p",
                                             "watermark": False, "audio_setting": "origin", "image_urls": [ref],
                                             "video_url": video}
    assert stats(sim)["blob_downloads"] == {"src.mp4": 1, "style.png": 1}


@pytest.mark.parametrize("kw, field", [
    ({"mode": "t2v", "version": "1.1"}, "mode"),
    ({"mode": "t2v", "aspect_ratio": "21:9"}, "aspect_ratio"),
    ({"mode": "t2v", "prompt": "x" * 2501}, "prompt"),
])
async def test_unsupported_requests_refused_before_sending(runner, sim, tmp_path, kw, field):
    with pytest.raises(ValidationError) as err:
        await run(runner, tmp_path, **{"prompt": "a horse", **kw})
    assert [v.field for v in err.value.violations] == [field]
    if kw.get("version") == "1.1":
        assert "providers that offer it" in str(err.value) and "apiframe" in str(err.value)
    assert sent(sim) == [] and stats(sim)["submissions"] == {}


async def test_bytes_need_an_upload_bucket(runner, sim, tmp_path):
    with pytest.raises(ConfigError):
        await run(runner, tmp_path, mode="i2v", first_frame=MediaInput.image_bytes(png_bytes()))
    assert sent(sim) == []


async def test_bad_key_names_the_variable_and_hides_the_key(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("APIXO_API_KEY", "apixo-invalid-42")
    with pytest.raises(ProviderError) as err:
        await run(make_runner(sim, tmp_path, NAME), tmp_path, mode="t2v", prompt="a")
    assert err.value.kind == "auth" and err.value.status == 401 and "APIXO_API_KEY" in str(err.value)
    assert "apixo-invalid-42" not in str(err.value)


async def test_no_credits_arrives_inside_http_200(sim, monkeypatch, tmp_path):
    status, reply = http("POST", sim.base_url(NAME) + "/generateTask/happyHorse",
                         {"request_type": "async", "input": {"mode": "text-to-video", "prompt": "a"}},
                         {"Authorization": "Bearer apixo-nocredit"})
    assert status == 200 and reply == {"code": 400, "message": "Insufficient credits", "data": None}
    monkeypatch.setenv("APIXO_API_KEY", "apixo-nocredit")
    r = make_runner(sim, tmp_path, NAME)
    with pytest.raises(ProviderError) as err:
        await run(r, tmp_path, mode="t2v", prompt="a")
    assert err.value.kind == "credits" and "Insufficient credits" in str(err.value)
    assert r.ledger.recent(1)[0].status == "rejected"


def test_error_code_inside_http_200_poll_is_an_error():
    reply = HttpReply(200, {}, {"code": 500, "message": "Server Error", "data": None})
    with pytest.raises(ProviderError) as err:
        ADAPTER.parse_poll(reply)
    assert err.value.kind == "server" and err.value.status == 500


def test_result_json_is_a_string():
    ok = HttpReply(200, {}, {"code": 200, "message": "success", "data": {
        "taskId": "task_1", "state": "success", "costTime": 12500,
        "resultJson": json.dumps({"resultUrls": ["https://cdn.apixo.ai/output/a.mp4"]})}})
    status = ADAPTER.parse_poll(ok)
    assert status.state == "succeeded" and status.video_url == "https://cdn.apixo.ai/output/a.mp4"
    assert status.usage == {"costTime": 12500}
    bad = HttpReply(200, {}, {"code": 200, "message": "success", "data": {"taskId": "task_1", "state": "success",
                                                                          "resultJson": "not json"}})
    with pytest.raises(ProviderError) as err:
        ADAPTER.parse_poll(bad)
    assert err.value.kind == "protocol"


async def test_rate_limited_poll_is_retried(runner, sim, tmp_path):
    http("POST", sim.url + "/_sim/faults", {"provider": NAME, "stage": "poll", "kind": "status", "status": 429,
                                            "retry_after": 0})
    res = await run(runner, tmp_path, mode="t2v", prompt="a")
    assert res.path and stats(sim)["submissions"] == {NAME: 1}
    faults = [r for r in stats(sim)["requests"][NAME] if r["body"] and "fault" in r["body"]]
    assert len(faults) == 1


@pytest.mark.parametrize("code", [429, 500, 503])
async def test_in_body_429_and_5xx_on_a_poll_are_retried_like_real_ones(runner, sim, tmp_path, code):
    # APIXO may answer HTTP 200 with {"code": 429 | 5xx, ...}: the wait goes on, the job is delivered.
    for _ in range(2):
        http("POST", sim.url + "/_sim/faults", {"provider": NAME, "stage": "poll", "kind": "status", "status": code,
                                                "http_status": 200})
    res = await run(runner, tmp_path, mode="t2v", prompt="a")
    assert res.path and stats(sim)["submissions"] == {NAME: 1}
    assert len([r for r in stats(sim)["requests"][NAME] if r["body"] and "fault" in r["body"]]) == 2
    assert runner.ledger.find_task(res.task_id, NAME).status == "done"


async def test_in_body_429_on_submit_is_waited_out_then_sent_once(runner, sim, tmp_path):
    http("POST", sim.url + "/_sim/faults", {"provider": NAME, "stage": "submit", "kind": "status", "status": 429,
                                            "http_status": 200, "retry_after": 0})
    res = await run(runner, tmp_path, mode="t2v", prompt="a")
    assert res.path and stats(sim)["submissions"] == {NAME: 1}


async def test_host_bad_parameter_message_passed_on(runner, sim, tmp_path):
    missing = f"{sim.url}/_sim/blobs/never-uploaded.png"
    with pytest.raises(ProviderError) as err:
        await run(runner, tmp_path, mode="i2v", first_frame=MediaInput.from_url(missing, "image"))
    assert err.value.kind == "bad_request" and err.value.status == 400
    assert "input.image_urls[0]" in str(err.value) and "HTTP 404" in str(err.value)


async def test_failed_job_reports_fail_code_and_message(runner, sim, tmp_path):
    http("POST", sim.url + "/_sim/faults", {"provider": NAME, "stage": "job", "kind": "fail",
                                            "reason": "Content violates usage policy"})
    with pytest.raises(JobFailed) as err:
        await run(runner, tmp_path, mode="t2v", prompt="a")
    assert "Content violates usage policy" in str(err.value) and err.value.code == "GENERATION_FAILED"


def test_simulator_refuses_what_apixo_refuses(sim):
    url = sim.base_url(NAME) + "/generateTask/happyHorse"
    auth = {"Authorization": "Bearer k"}
    ok = {"request_type": "async", "input": {"mode": "text-to-video", "prompt": "a", "duration": 3}}
    status, reply = http("POST", url, ok)
    assert status == 401 and reply["code"] == 401 and reply["data"] is None
    img = {"image_urls": ["https://x/a.png"]}
    cases = [({"input": ok["input"]} | {"request_type": "sync"}, "request_type"),
             ({**ok, "request_type": "callback"}, "callback_url"),
             ({**ok, "input": {**ok["input"], "mode": "text-to-image"}}, "input.mode"),
             ({**ok, "input": {"mode": "video-edit", "prompt": "a"}}, "video_url"),
             ({**ok, "input": {"mode": "image-to-video", "ratio": "16:9", **img}}, "input.ratio"),
             ({**ok, "input": {"mode": "image-to-video", "image_urls": ["https://x/a.png"] * 2}}, "image_urls"),
             ({**ok, "input": {"mode": "reference-to-video", "prompt": "a", "image_urls": ["x"] * 10}}, "image_urls"),
             ({**ok, "input": {"mode": "image-to-video", "image_urls": ["data:image/png;base64,iVBORw0KGgo="]}},
              "publicly accessible URL"),
             ({**ok, "input": {**ok["input"], "images": ["https://x/a.png"]}}, "input.images"),
             ({**ok, "input": {**ok["input"], "duration": 16}}, "input.duration")]
    for body, words in cases:
        status, reply = http("POST", url, body, auth)
        assert status == 400 and reply["code"] == 400 and words in reply["data"]["error"], (body, reply)
    assert stats(sim)["submissions"] == {}
    status, reply = http("POST", url, ok, auth)
    assert status == 200 and reply["code"] == 200 and reply["data"]["taskId"].startswith("task_")
    status, reply = http("GET", sim.base_url(NAME) + "/statusTask/happyHorse?taskId=task_nope", None, auth)
    assert status == 404 and reply["code"] == 404


def test_estimate_prints_apixo_price(capsys):
    assert cli_main(["estimate", "--provider", NAME, "--version", "1.0", "--mode", "t2v", "--duration", "10",
                     "--resolution", "1080p"]) == 0
    assert capsys.readouterr().out.startswith("2.25 USD")
    # Edit: min(input, 15) x 2 x rate.
    assert cli_main(["estimate", "--provider", NAME, "--version", "1.0", "--mode", "edit", "--prompt", "night",
                     "--video", "https://x/v.mp4", "--video-duration", "20"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("3.75 USD") and "15 s of input used + 15 s output = 30 s billed" in out
