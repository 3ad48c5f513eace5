"""The getimg.ai adapter against the simulated getimg: 202 submit, images[{url, role}], URL-only media, errors."""
import json
import urllib.error
import urllib.request

import pytest

from happyhorse.cli import main as cli_main
from happyhorse.engine.errors import ConfigError, JobFailed, ProviderError, ValidationError
from happyhorse.engine.http import HttpReply
from happyhorse.engine.request import MediaInput
from tests.conftest import png_bytes
from tests.contract import helpers
from tests.contract.helpers import http, image_url, make_runner, probe, run, stats

NAME = "getimg"
KEY = "sk_live_getimg_secret"
SUBMIT_PATH = "/getimg/v2/videos/generations"


@pytest.fixture
def runner(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("GETIMG_API_KEY", KEY)
    return make_runner(sim, tmp_path, NAME)


def sent(sim, method="POST"):
    return helpers.sent(sim, NAME, method, faults=False)


async def test_t2v_end_to_end_exact_request_and_reported_cost(runner, sim, tmp_path):
    res = await run(runner, tmp_path, mode="t2v", prompt="a horse on a beach", aspect_ratio="9:16")
    p = probe(res.path)
    assert (p["codec"], p["w"], p["h"], p["fps"], p["audio"]) == ("h264", 720, 1280, 24.0, True)
    assert abs(p["dur"] - 3) < 0.1
    assert res.task_id.startswith("req-")
    # The cost is getimg's own usage report, which matches the price table.
    assert res.billed_seconds == 3 and res.cost_usd == pytest.approx(3 * 0.14)
    post = sent(sim)[0]
    assert post["path"] == SUBMIT_PATH and post["headers"]["Authorization"] == "***"
    assert post["body"] == {"model": "happyhorse-1", "prompt": "a horse on a beach", "aspect_ratio": "9:16",
                            "resolution": "720p", "duration": 3}
    assert {r["path"] for r in sent(sim, "GET")} == {f"{SUBMIT_PATH}/{res.task_id}"}


async def test_i2v_sends_public_url_as_first_frame(runner, sim, tmp_path):
    url = image_url(sim, "first.png", 800, 600)
    res = await run(runner, tmp_path, mode="i2v", prompt="the horse starts to run",
                    first_frame=MediaInput.from_url(url, "image"))
    assert (res.width, res.height) == (960, 720)            # the image's 4:3, not a requested ratio
    assert sent(sim)[0]["body"] == {"model": "happyhorse-1", "prompt": "the horse starts to run",
                                    "resolution": "720p", "duration": 3,
                                    "images": [{"url": url, "role": "first_frame"}]}
    assert stats(sim)["blob_downloads"] == {"first.png": 1}


async def test_r2v_sends_reference_roles_in_order(runner, sim, tmp_path):
    urls = [image_url(sim, f"ref{i}.png", 500, 500, color=c) for i, c in enumerate(((255, 0, 0), (0, 0, 255)))]
    res = await run(runner, tmp_path, mode="r2v", prompt="[Image 1] meets [Image 2]", aspect_ratio="1:1",
                    reference_images=tuple(MediaInput.from_url(u, "image") for u in urls))
    assert (res.width, res.height) == (720, 720)
    assert sent(sim)[0]["body"]["images"] == [{"url": u, "role": "reference_image"} for u in urls]
    assert stats(sim)["blob_downloads"] == {"ref0.png": 1, "ref1.png": 1}


@pytest.mark.parametrize("kw, field, names", [
    ({"mode": "edit", "source_video": MediaInput.from_url("https://x/v.mp4", "video")}, "mode", "apixo"),
    ({"mode": "t2v", "version": "1.1"}, "mode", "apiframe"),
    ({"mode": "t2v", "seed": 1}, "seed", None),
    ({"mode": "r2v", "reference_images": tuple(MediaInput.from_url(f"https://x/{i}.png", "image")
                                               for i in range(9))}, "reference_images", "dashscope"),
])
async def test_unsupported_requests_refused_before_sending(runner, sim, tmp_path, kw, field, names):
    with pytest.raises(ValidationError) as err:
        await run(runner, tmp_path, **{"prompt": "a horse", **kw})
    assert [v.field for v in err.value.violations] == [field]
    if names:
        assert "providers" in str(err.value) and names in str(err.value)
    assert sent(sim) == [] and stats(sim)["submissions"] == {}


async def test_bytes_need_an_upload_bucket(runner, sim, tmp_path):
    with pytest.raises(ConfigError) as err:
        await run(runner, tmp_path, mode="i2v", prompt="a", first_frame=MediaInput.image_bytes(png_bytes()))
    assert "public URLs" in str(err.value)
    assert sent(sim) == []


async def test_bad_key_names_the_variable_and_hides_the_key(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("GETIMG_API_KEY", "sk_invalid_key_9")
    with pytest.raises(ProviderError) as err:
        await run(make_runner(sim, tmp_path, NAME), tmp_path, mode="t2v", prompt="a")
    assert err.value.kind == "auth" and err.value.status == 401 and "GETIMG_API_KEY" in str(err.value)
    assert "sk_invalid_key_9" not in str(err.value)


async def test_no_credits(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("GETIMG_API_KEY", "sk_nocredit")
    with pytest.raises(ProviderError) as err:
        await run(make_runner(sim, tmp_path, NAME), tmp_path, mode="t2v", prompt="a")
    assert err.value.kind == "credits" and err.value.status == 402


async def test_rate_limited_poll_is_retried(runner, sim, tmp_path):
    http("POST", sim.url + "/_sim/faults", {"provider": NAME, "stage": "poll", "kind": "status", "status": 429,
                                            "retry_after": 0})
    res = await run(runner, tmp_path, mode="t2v", prompt="a")
    assert res.path and stats(sim)["submissions"] == {NAME: 1}
    assert any(r["body"] and "fault" in r["body"] for r in stats(sim)["requests"][NAME])


def test_rate_limit_reply_carries_getimg_headers(sim):
    http("POST", sim.url + "/_sim/faults", {"provider": NAME, "stage": "poll", "kind": "status", "status": 429,
                                            "retry_after": 7})
    req = urllib.request.Request(sim.base_url(NAME) + "/v2/videos/generations/req-x",
                                 headers={"Authorization": "Bearer k"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req)
    h = err.value.headers
    assert err.value.code == 429 and h["Retry-After"] == "7" and h["X-RateLimit-Remaining"] == "0"
    assert h["X-RateLimit-Limit"] and int(h["X-RateLimit-Reset"]) > 1e9
    assert json.loads(err.value.read())["error"]["code"] == "rate_limit"


async def test_rate_limit_error_keeps_retry_after(runner):
    err = runner.adapter.map_error(HttpReply(429, {"Retry-After": "12"}, {"error": {
        "message": "Too many concurrent generations", "type": "rate_limit_error", "param": None,
        "code": "rate_limit"}}))
    assert err.kind == "rate_limit" and err.retry_after == 12 and "concurrent" in str(err)


async def test_host_bad_parameter_message_passed_on(runner, sim, tmp_path):
    # A URL's content is the host's to check: its refusal and the parameter it names reach the user.
    url = image_url(sim, "small.png", 200, 200)
    with pytest.raises(ProviderError) as err:
        await run(runner, tmp_path, mode="i2v", prompt="a", first_frame=MediaInput.from_url(url, "image"))
    assert err.value.kind == "bad_request" and err.value.status == 400
    assert "image 200x200 is smaller than 300 px" in str(err.value) and "parameter: images[0]" in str(err.value)


async def test_failed_job_reports_reason(runner, sim, tmp_path):
    http("POST", sim.url + "/_sim/faults", {"provider": NAME, "stage": "job", "kind": "fail",
                                            "reason": "output flagged by content moderation"})
    with pytest.raises(JobFailed) as err:
        await run(runner, tmp_path, mode="t2v", prompt="a")
    assert "output flagged by content moderation" in str(err.value) and err.value.code == "generation_failed"


def test_simulator_refuses_what_getimg_refuses(sim):
    url = sim.base_url(NAME) + "/v2/videos/generations"
    auth = {"Authorization": "Bearer k"}
    ok = {"model": "happyhorse-1", "prompt": "a", "resolution": "720p", "duration": 3}
    status, reply = http("POST", url, ok)                                           # no key
    assert status == 401 and reply["error"]["code"] == "invalid_api_key"
    cases = [({**ok, "seed": 1}, "seed"), ({**ok, "model": "happyhorse-1.1"}, "model"),
             ({**ok, "duration": 20}, "duration"), ({**ok, "aspect_ratio": "21:9"}, "aspect_ratio"),
             ({**ok, "prompt": ""}, "prompt"),
             ({**ok, "images": [{"url": "data:image/png;base64,iVBORw0KGgo=", "role": "first_frame"}]},
              "images[0].url"),
             ({**ok, "images": [{"url": f"https://x/{i}.png", "role": "reference_image"} for i in range(9)]},
              "images"),
             ({**ok, "images": [{"url": "https://x/1.png", "role": "last_frame"}]}, "images")]
    for body, param in cases:
        status, reply = http("POST", url, body, auth)
        assert status == 400 and reply["error"]["param"] == param, (body, reply)
    assert stats(sim)["submissions"] == {}
    status, reply = http("POST", url, ok, auth)
    assert status == 202 and reply["status"] == "pending" and reply["id"].startswith("req-")
    status, reply = http("GET", f"{url}/req-unknown", None, auth)
    assert status == 404 and reply["error"]["type"] == "not_found_error"


def test_estimate_prints_getimg_price(capsys):
    assert cli_main(["estimate", "--provider", NAME, "--version", "1.0", "--mode", "t2v", "--duration", "10",
                     "--resolution", "1080p"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2.40 USD") and "0.24 USD/s x 10 s" in out
    assert cli_main(["estimate", "--provider", NAME, "--version", "1.0", "--mode", "t2v", "--duration", "5"]) == 0
    assert capsys.readouterr().out.startswith("0.70 USD")


async def test_image_to_video_without_prompt_is_refused_before_sending(runner, sim, tmp_path):
    # getimg's prompt is 1-4096 characters in every mode: an empty one would be a guaranteed 400.
    url = image_url(sim, "first.png")
    with pytest.raises(ValidationError) as err:
        await run(runner, tmp_path, mode="i2v", first_frame=MediaInput.from_url(url, "image"))
    assert "prompt: getimg.ai requires a prompt in every mode, image-to-video included" in str(err.value)
    assert helpers.no_request_reached(sim, "getimg")
