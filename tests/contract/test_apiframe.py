"""The Apiframe adapter against the simulated Apiframe: X-API-Key auth, 202 submit, the per-version parameter
block, the mode chosen by image count (so no one-reference r2v), credits instead of USD, and errors."""
import pytest

from happyhorse.cli import main as cli_main
from happyhorse.engine.errors import ConfigError, JobFailed, ProviderError, ValidationError
from happyhorse.engine.request import MediaInput
from tests.conftest import png_bytes
from tests.contract import helpers
from tests.contract.helpers import http, image_url, make_runner, probe, stats

NAME = "apiframe"
KEY = "afk_test_secret_55"
SUBMIT_PATH = "/apiframe/v2/videos/generate"


@pytest.fixture
def runner(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("APIFRAME_API_KEY", KEY)
    return make_runner(sim, tmp_path, NAME)


def sent(sim, method="POST"):
    return helpers.sent(sim, NAME, method, faults=False)


def run(runner, tmp_path, **kw):
    return helpers.run(runner, tmp_path, **{"version": "1.1", **kw})


async def test_v11_t2v_end_to_end_and_exact_request(runner, sim, tmp_path):
    res = await run(runner, tmp_path, mode="t2v", prompt="horses thundering across dunes", aspect_ratio="3:4",
                    seed=5)
    p = probe(res.path)
    assert (p["codec"], p["w"], p["h"], p["fps"], p["audio"]) == ("h264", 720, 960, 24.0, True)
    assert abs(p["dur"] - 3) < 0.1
    assert res.cost_usd is None                 # billed in credits; the credit's USD price is unpublished
    post = sent(sim)[0]
    assert post["path"] == SUBMIT_PATH and post["headers"]["X-API-Key"] == "***"
    assert "Authorization" not in post["headers"]
    assert post["body"] == {"prompt": "horses thundering across dunes", "model": "happyhorse-1.1",
                            "happyhorse11Params": {"resolution": "720p", "aspect_ratio": "3:4", "duration": 3,
                                                   "seed": 5}}
    assert {r["path"] for r in sent(sim, "GET")} == {f"/apiframe/v2/jobs/{res.task_id}"}


async def test_v11_one_image_is_i2v_without_ratio(runner, sim, tmp_path):
    url = image_url(sim, "first.png", 800, 600)
    res = await run(runner, tmp_path, mode="i2v", prompt="it starts to rain",
                    first_frame=MediaInput.from_url(url, "image"))
    assert (res.width, res.height) == (960, 720)
    assert sent(sim)[0]["body"]["happyhorse11Params"] == {"images": [url], "resolution": "720p", "duration": 3}
    assert stats(sim)["blob_downloads"] == {"first.png": 1}


async def test_v11_two_images_are_r2v(runner, sim, tmp_path):
    urls = [image_url(sim, f"ref{i}.png", 500, 500, color=c) for i, c in enumerate(((255, 0, 0), (0, 0, 255)))]
    res = await run(runner, tmp_path, mode="r2v", prompt="[Image 1] walks through the gate of [Image 2]",
                    aspect_ratio="16:9", reference_images=tuple(MediaInput.from_url(u, "image") for u in urls))
    assert (res.width, res.height) == (1280, 720)
    assert sent(sim)[0]["body"]["happyhorse11Params"] == {"images": urls, "resolution": "720p",
                                                          "aspect_ratio": "16:9", "duration": 3}
    assert stats(sim)["blob_downloads"] == {"ref0.png": 1, "ref1.png": 1}


async def test_v10_t2v_and_i2v_use_the_10_block(runner, sim, tmp_path):
    res = await run(runner, tmp_path, version="1.0", mode="t2v", prompt="a sunrise", aspect_ratio="1:1")
    assert (res.width, res.height) == (720, 720)
    url = image_url(sim, "first.png", 600, 800)
    res = await run(runner, tmp_path, version="1.0", mode="i2v", prompt="a sunrise",
                    first_frame=MediaInput.from_url(url, "image"))
    assert (res.width, res.height) == (720, 960)
    t2v, i2v = (r["body"] for r in sent(sim))
    assert t2v == {"prompt": "a sunrise", "model": "happyhorse-1.0",
                   "happyhorse10Params": {"resolution": "720p", "aspect_ratio": "1:1", "duration": 3}}
    assert i2v["happyhorse10Params"] == {"image": url, "resolution": "720p", "duration": 3}


async def test_one_reference_r2v_is_refused_naming_who_takes_it(runner, sim, tmp_path):
    ref = MediaInput.from_url("https://x/ref.png", "image")
    with pytest.raises(ValidationError) as err:
        await run(runner, tmp_path, mode="r2v", prompt="[Image 1] dances", reference_images=(ref,))
    assert [v.field for v in err.value.violations] == ["reference_images"]
    message = str(err.value)
    assert "Apiframe takes 2-9" in message and "providers that take 1:" in message and "dashscope" in message
    assert "apiframe" not in message.split("providers that take 1:")[1]
    assert sent(sim) == [] and stats(sim)["submissions"] == {}


@pytest.mark.parametrize("kw, field", [
    ({"mode": "edit", "version": "1.0", "source_video": MediaInput.from_url("https://x/v.mp4", "video")}, "mode"),
    ({"mode": "r2v", "version": "1.0",
      "reference_images": (MediaInput.from_url("https://x/1.png", "image"),) * 2}, "mode"),
    ({"mode": "t2v", "aspect_ratio": "21:9"}, "aspect_ratio"),
    ({"mode": "t2v", "prompt": "x" * 4001}, "prompt"),
])
async def test_unsupported_requests_refused_before_sending(runner, sim, tmp_path, kw, field):
    with pytest.raises(ValidationError) as err:
        await run(runner, tmp_path, **{"prompt": "a horse", **kw})
    assert [v.field for v in err.value.violations] == [field]
    if field == "mode":
        assert "providers that offer it" in str(err.value)
    assert sent(sim) == [] and stats(sim)["submissions"] == {}


async def test_bytes_need_an_upload_bucket(runner, sim, tmp_path):
    with pytest.raises(ConfigError):
        await run(runner, tmp_path, mode="i2v", prompt="a", first_frame=MediaInput.image_bytes(png_bytes()))
    assert sent(sim) == []


async def test_bad_key_names_the_variable_and_hides_the_key(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("APIFRAME_API_KEY", "afk_invalid_0042")
    with pytest.raises(ProviderError) as err:
        await run(make_runner(sim, tmp_path, NAME), tmp_path, mode="t2v", prompt="a")
    assert err.value.kind == "auth" and err.value.status == 401 and "APIFRAME_API_KEY" in str(err.value)
    assert "afk_invalid_0042" not in str(err.value)


async def test_no_credits_is_402_with_balance_and_cost(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("APIFRAME_API_KEY", "afk_nocredit")
    with pytest.raises(ProviderError) as err:
        await run(make_runner(sim, tmp_path, NAME), tmp_path, mode="t2v", prompt="a", resolution="1080p")
    assert err.value.kind == "credits" and err.value.status == 402
    assert "balance 0 credits, this job needs 93" in str(err.value)        # 31 credits/s x 3 s


async def test_rate_limited_poll_is_retried(runner, sim, tmp_path):
    http("POST", sim.url + "/_sim/faults", {"provider": NAME, "stage": "poll", "kind": "status", "status": 429,
                                            "retry_after": 0})
    res = await run(runner, tmp_path, mode="t2v", prompt="a")
    assert res.path and stats(sim)["submissions"] == {NAME: 1}
    assert len([r for r in stats(sim)["requests"][NAME] if r["body"] and "fault" in r["body"]]) == 1


async def test_host_bad_parameter_message_passed_on(runner, sim, tmp_path):
    small = image_url(sim, "tiny.png", 200, 200)        # Apiframe: each side >= 300 px
    with pytest.raises(ProviderError) as err:
        await run(runner, tmp_path, mode="i2v", prompt="a", first_frame=MediaInput.from_url(small, "image"))
    assert err.value.kind == "bad_request" and err.value.status == 400
    assert "happyhorse11Params.images[0]: image 200x200 is smaller than 300 px" in str(err.value)


async def test_failed_job_reports_reason(runner, sim, tmp_path):
    http("POST", sim.url + "/_sim/faults", {"provider": NAME, "stage": "job", "kind": "fail",
                                            "reason": "provider error: content policy violation"})
    with pytest.raises(JobFailed) as err:
        await run(runner, tmp_path, mode="t2v", prompt="a")
    assert "provider error: content policy violation" in str(err.value)


def test_simulator_refuses_what_apiframe_refuses(sim):
    url = sim.base_url(NAME) + "/v2/videos/generate"
    ok = {"prompt": "a", "model": "happyhorse-1.1", "happyhorse11Params": {"resolution": "720p", "duration": 3}}
    status, reply = http("POST", url, ok, {"Authorization": "Bearer afk_x"})      # Bearer is not Apiframe's auth
    assert status == 401 and reply["error"]["code"] == "UNAUTHORIZED"
    auth = {"X-API-Key": "afk_x"}
    p11 = ok["happyhorse11Params"]
    cases = [({**ok, "happyhorse10Params": {}}, "happyhorse10Params does not apply"),
             ({**ok, "model": "happyhorse-1.2"}, "Unknown model"),
             ({**ok, "happyhorse11Params": {**p11, "images": ["https://x/a.png"] * 10}}, "at most 9"),
             ({**ok, "happyhorse11Params": {**p11, "watermark": False}}, "happyhorse11Params.watermark"),
             ({**ok, "happyhorse11Params": {**p11, "aspect_ratio": "21:9"}}, "aspect_ratio"),
             ({**ok, "happyhorse11Params": {**p11, "images": ["data:image/png;base64,iVBORw0KGgo="]}},
              "data: URIs are not accepted"),
             ({**ok, "prompt": ""}, "prompt is required")]
    for body, words in cases:
        status, reply = http("POST", url, body, auth)
        assert status == 400 and words in reply["error"]["message"], (body, reply)
    assert stats(sim)["submissions"] == {}
    status, reply = http("POST", url, ok, auth)
    assert status == 202 and reply["status"] == "QUEUED" and reply["jobId"]
    status, job = http("GET", f"{sim.base_url(NAME)}/v2/jobs/{reply['jobId']}", None, auth)
    assert status == 200 and job["status"] in ("QUEUED", "PROCESSING") and job["result"] is None
    assert job["creditCost"] == 72                    # 24 credits/s x 3 s
    status, reply = http("GET", f"{sim.base_url(NAME)}/v2/jobs/nope", None, auth)
    assert status == 404 and reply["error"]["code"] == "NOT_FOUND"


def test_estimate_prints_credits_and_says_usd_is_unknown(capsys):
    assert cli_main(["estimate", "--provider", NAME, "--mode", "t2v", "--duration", "10",
                     "--resolution", "1080p"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("310 credits (USD rate not published)") and "31 credits/s x 10 s = 310 credits" in out
    assert "apiframe publishes no USD rate for HappyHorse 1.1 1080p" in out
    assert cli_main(["estimate", "--provider", NAME, "--version", "1.0", "--mode", "t2v", "--duration", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("120 credits (USD rate not published)") and "24 credits/s x 5 s = 120 credits" in out


async def test_image_to_video_without_prompt_is_refused_before_sending(runner, sim, tmp_path):
    with pytest.raises(ValidationError) as err:
        await run(runner, tmp_path, version="1.1", mode="i2v",
                  first_frame=MediaInput.from_url(image_url(sim, "first.png"), "image"))
    assert "prompt: Apiframe requires a prompt in every mode, image-to-video included" in str(err.value)
    assert helpers.no_request_reached(sim, "apiframe")


def test_v10_estimate_uses_the_published_credit_rates(capsys):
    # Apiframe's Happy Horse 1.0 page: 24 credits/s at 720p, 48 at 1080p.
    assert cli_main(["estimate", "--provider", "apiframe", "--version", "1.0", "--mode", "t2v", "--duration", "5",
                     "--resolution", "1080p"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("240 credits (USD rate not published)") and "48 credits/s x 5 s = 240 credits" in out
