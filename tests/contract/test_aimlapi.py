"""The AI/ML API adapter against the simulated AI/ML API: HappyHorse 1.0's four modes, exact requests, errors."""
import json
import urllib.error
import urllib.request

import pytest

from happyhorse.cli import main as cli_main
from happyhorse.engine.errors import JobFailed, ProviderError, ValidationError
from happyhorse.engine.http import HttpReply
from happyhorse.engine.request import GenerationRequest, MediaInput
from happyhorse.engine.runner import RunOptions
from happyhorse.providers.registry import get_adapter
from tests.conftest import png_bytes
from tests.contract.helpers import http, make_runner, no_request_reached, probe, put_blob, sent, stats

NAME = "aimlapi"
KEY = "aiml-test-key-123"
SUBMIT_PATH = "/aimlapi/v2/video/generations"


@pytest.fixture
def runner(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("AIMLAPI_API_KEY", KEY)
    return make_runner(sim, tmp_path, NAME)


async def test_t2v_end_to_end_exact_request_and_cost(runner, sim, tmp_path):
    req = GenerationRequest(mode="t2v", version="1.0", prompt="a horse on a beach", resolution="720p",
                            aspect_ratio="16:9", duration_s=3, seed=42)
    res = await runner.run(req, RunOptions(out_dir=str(tmp_path)))
    p = probe(res.path)
    assert (p["codec"], p["w"], p["h"], p["fps"], p["audio"]) == ("h264", 1280, 720, 24.0, True)
    assert abs(p["dur"] - 3) < 0.1
    # The cost is the host's own credits_used (a string) at the published 2,000,000 credits per USD.
    assert res.cost_usd == pytest.approx(0.42) and res.billed_seconds == 3
    post = sent(sim, NAME)[0]
    assert post["path"] == SUBMIT_PATH and post["headers"]["Authorization"] == "***"
    assert post["body"] == {"model": "alibaba/happyhorse-1-0", "prompt": "a horse on a beach",
                            "aspect_ratio": "16:9", "resolution": "720p", "duration": 3, "seed": 42,
                            "watermark": False}
    polls = sent(sim, NAME, "GET")
    assert polls and all(r["path"] == f"{SUBMIT_PATH}?generation_id={res.task_id}" for r in polls)
    assert all(r["headers"]["Authorization"] == "***" and r["body"] is None for r in polls)
    assert stats(sim)["submissions"] == {NAME: 1}


async def test_i2v_sends_bytes_as_data_uri_and_takes_image_ratio(runner, sim, tmp_path):
    first = MediaInput.image_bytes(png_bytes(800, 600))
    res = await runner.run(GenerationRequest(mode="i2v", version="1.0", prompt="slow push-in", first_frame=first,
                                             duration_s=3, watermark=True), RunOptions(out_dir=str(tmp_path)))
    assert (res.width, res.height) == (960, 720) and abs(res.duration_s - 3) < 0.1
    body = sent(sim, NAME)[0]["body"]
    assert body.pop("image_url").startswith("data:image/png;base64,")
    assert body == {"model": "alibaba/happyhorse-1-0", "prompt": "slow push-in", "resolution": "720p",
                    "duration": 3, "watermark": True}


async def test_i2v_from_public_url_is_fetched(runner, sim, tmp_path):
    url = put_blob(sim, "first.png", png_bytes(720, 1280), "image/png")
    res = await runner.run(GenerationRequest(mode="i2v", version="1.0", prompt="p",
                                             first_frame=MediaInput.from_url(url, "image"), duration_s=3),
                           RunOptions(out_dir=str(tmp_path)))
    assert (res.width, res.height) == (720, 1280)
    assert sent(sim, NAME)[0]["body"]["image_url"] == url
    assert stats(sim)["blob_downloads"] == {"first.png": 1}


async def test_r2v_sends_reference_image_urls_in_order(runner, sim, tmp_path):
    refs = tuple(MediaInput.image_bytes(png_bytes(500, 500, color=c)) for c in ((255, 0, 0), (0, 0, 255)))
    res = await runner.run(GenerationRequest(mode="r2v", version="1.0", prompt="[Image 1] meets [Image 2]",
                                             reference_images=refs, aspect_ratio="1:1", duration_s=3),
                           RunOptions(out_dir=str(tmp_path)))
    assert (res.width, res.height) == (720, 720)
    body = sent(sim, NAME)[0]["body"]
    urls = body.pop("reference_image_urls")
    assert len(urls) == 2 and all(u.startswith("data:image/png;base64,") for u in urls)
    assert urls[0] != urls[1]
    assert body == {"model": "alibaba/happyhorse-1-0", "prompt": "[Image 1] meets [Image 2]",
                    "aspect_ratio": "1:1", "resolution": "720p", "duration": 3, "watermark": False}


async def test_edit_sends_video_url_and_audio_setting_without_duration(runner, sim, tmp_path):
    src = await runner.run(GenerationRequest(mode="t2v", version="1.0", prompt="source", duration_s=3,
                                             aspect_ratio="4:3"), RunOptions(out_dir=str(tmp_path / "src")))
    ref = MediaInput.image_bytes(png_bytes(500, 500))
    res = await runner.run(GenerationRequest(mode="edit", version="1.0", prompt="make it night",
                                             source_video=MediaInput.from_path(src.path, "video"),
                                             reference_images=(ref,), audio_setting="origin"),
                           RunOptions(out_dir=str(tmp_path)))
    assert (res.width, res.height) == (960, 720) and abs(res.duration_s - 3) < 0.1
    assert res.cost_usd == pytest.approx(0.42)          # credits_used from the host, not an estimate
    body = sent(sim, NAME)[-1]["body"]
    assert body.pop("video_url").startswith("data:video/mp4;base64,")
    assert [u[:22] for u in body.pop("reference_image_urls")] == ["data:image/png;base64,"]
    assert body == {"model": "alibaba/happyhorse-1-0", "prompt": "make it night", "resolution": "720p",
                    "audio_setting": "origin", "watermark": False}


@pytest.mark.parametrize("req, expect", [
    (GenerationRequest(mode="t2v", version="1.1", prompt="a", duration_s=3),
     ["does not offer text-to-video on HappyHorse 1.1", "dashscope", "reapi"]),
    (GenerationRequest(mode="edit", version="1.1", prompt="a",
                       source_video=MediaInput.from_url("https://x.example/v.mp4", "video")),
     ["HappyHorse 1.1 has no video edit: use version 1.0"]),
    (GenerationRequest(mode="t2v", version="1.0", prompt="a", aspect_ratio="21:9", duration_s=3),
     ["aspect_ratio", "16:9"]),
])
async def test_unsupported_refused_before_any_request(runner, sim, tmp_path, req, expect):
    with pytest.raises(ValidationError) as err:
        await runner.run(req, RunOptions(out_dir=str(tmp_path)))
    assert all(text in str(err.value) for text in expect), str(err.value)
    assert no_request_reached(sim, NAME)


async def test_bad_key_names_variable_and_hides_key(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("AIMLAPI_API_KEY", "aiml-invalid-key-999")
    with pytest.raises(ProviderError) as err:
        await make_runner(sim, tmp_path, NAME).run(GenerationRequest(mode="t2v", version="1.0", prompt="a",
                                                                     duration_s=3), RunOptions(out_dir=str(tmp_path)))
    assert err.value.kind == "auth" and err.value.status == 401 and "AIMLAPI_API_KEY" in str(err.value)
    assert "aiml-invalid-key-999" not in str(err.value)


async def test_no_credits_is_403(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("AIMLAPI_API_KEY", "aiml-nocredit")
    with pytest.raises(ProviderError) as err:
        await make_runner(sim, tmp_path, NAME).run(GenerationRequest(mode="t2v", version="1.0", prompt="a",
                                                                     duration_s=3), RunOptions(out_dir=str(tmp_path)))
    assert err.value.kind == "credits" and err.value.status == 403 and "credits" in str(err.value)
    assert stats(sim)["submissions"] == {}


async def test_poll_429_without_retry_after_is_retried(runner, sim, tmp_path):
    http("POST", sim.url + "/_sim/faults", {"provider": NAME, "stage": "poll", "kind": "status", "status": 429,
                                            "retry_after": 0})
    res = await runner.run(GenerationRequest(mode="t2v", version="1.0", prompt="a", duration_s=3),
                           RunOptions(out_dir=str(tmp_path)))
    assert res.path and stats(sim)["submissions"] == {NAME: 1}
    assert any(r["body"] and "fault" in r["body"] for r in sent(sim, NAME, "GET"))
    # The host's 429 carries no Retry-After (even when a fault asks for one) and its usual error body.
    http("POST", sim.url + "/_sim/faults", {"provider": NAME, "stage": "poll", "kind": "status", "status": 429,
                                            "retry_after": 7})
    req = urllib.request.Request(f"{sim.base_url(NAME)}/v2/video/generations?generation_id={res.task_id}",
                                 headers={"Authorization": "Bearer k"})
    with pytest.raises(urllib.error.HTTPError) as raw:
        urllib.request.urlopen(req)
    assert raw.value.code == 429 and raw.value.headers.get("Retry-After") is None
    body = json.loads(raw.value.read())
    assert set(body) == {"message", "path", "requestId", "statusCode", "timestamp"} and body["statusCode"] == 429
    err = get_adapter(NAME).map_error(HttpReply(429, {}, body))
    assert err.kind == "rate_limit" and err.retry_after is None


async def test_bad_parameter_passes_on_host_message(runner, sim, tmp_path):
    url = put_blob(sim, "tiny.png", png_bytes(200, 200), "image/png")   # a URL: only the host can check it
    with pytest.raises(ProviderError) as err:
        await runner.run(GenerationRequest(mode="i2v", version="1.0", prompt="p",
                                           first_frame=MediaInput.from_url(url, "image"), duration_s=3),
                         RunOptions(out_dir=str(tmp_path)))
    assert err.value.kind == "bad_request" and err.value.status == 400
    assert "image_url: image 200x200 is smaller than 300 px" in str(err.value)


async def test_failed_job_reports_host_reason(runner, sim, tmp_path):
    http("POST", sim.url + "/_sim/faults", {"provider": NAME, "stage": "job", "kind": "fail",
                                            "reason": "content moderation rejected the output"})
    with pytest.raises(JobFailed) as err:
        await runner.run(GenerationRequest(mode="t2v", version="1.0", prompt="a", duration_s=3),
                         RunOptions(out_dir=str(tmp_path)))
    assert "content moderation rejected the output" in str(err.value) and err.value.code == "GenerationError"
    assert runner.ledger.find_task(err.value.task_id).status == "failed"


def test_reply_quirks_parse_robustly():
    ad = get_adapter(NAME)
    done = {"id": "g1", "status": "completed", "video": {"url": "https://cdn.example/v.mp4"}}
    as_string = ad.parse_poll(HttpReply(200, {}, {**done, "meta": {"usage": {"credits_used": "882000"}}}))
    assert as_string.state == "succeeded" and as_string.cost_usd == pytest.approx(0.441)
    # The poll reply documents only credits_used: a usd_spent there is not what the cost is read from.
    assert ad.parse_poll(HttpReply(200, {}, {**done, "meta": {"usage": {"credits_used": 1_000_000,
                                                                         "usd_spent": 9.0}}})).cost_usd == 0.5
    assert ad.parse_poll(HttpReply(200, {}, {**done, "meta": {"usage": {"usd_spent": 0.5}}})).cost_usd is None
    assert ad.parse_poll(HttpReply(200, {}, {**done, "meta": None})).cost_usd is None
    assert ad.parse_poll(HttpReply(200, {}, {"id": "g1", "status": "generating", "video": None})).state == "running"
    failed = ad.parse_poll(HttpReply(200, {}, {"id": "g1", "status": "error",
                                               "error": {"name": "Err", "message": "nsfw"}}))
    assert (failed.state, failed.error_code, failed.error_message) == ("failed", "Err", "nsfw")
    listed = ad.map_error(HttpReply(400, {}, {"message": ["duration must be one of 3..15", "seed must be an int"],
                                              "statusCode": "400"}))
    assert listed.kind == "bad_request" and "duration must be one of 3..15; seed must be an int" in str(listed)
    assert ad.parse_submit(HttpReply(200, {}, {"id": "rLCxsu-1_rTBBGbBC6JFJ", "status": "queued"})) \
        == "rLCxsu-1_rTBBGbBC6JFJ"


def test_simulator_protocol_rules(sim):
    url = sim.base_url(NAME) + "/v2/video/generations"
    auth = {"Authorization": "Bearer k"}
    ok = {"model": "alibaba/happyhorse-1-0", "prompt": "a", "duration": 3, "resolution": "720p"}
    status, reply = http("POST", url, ok)
    assert status == 401 and set(reply) == {"message", "path", "requestId", "statusCode", "timestamp"}
    assert reply["path"] == "/v2/video/generations"
    for bad, word in [({"model": "alibaba/happyhorse-1-1"}, "model"), ({"prompt": None}, "prompt"),
                      ({"prompt": "", "image_url": "https://x/a.png"}, "prompt should not be empty"),
                      ({"duration": 20}, "duration"), ({"duration": "abc"}, "duration"),
                      ({"aspect_ratio": "21:9"}, "aspect_ratio"), ({"resolution": "720P"}, "resolution"),
                      ({"watermark": "no"}, "watermark"), ({"audio_setting": "mute"}, "audio_setting"),
                      ({"image_url": "https://x/a.png", "video_url": "https://x/v.mp4"}, "video_url"),
                      ({"image_url": "https://x/a.png", "reference_image_urls": ["https://x/b.png"]}, "image_url"),
                      ({"reference_image_urls": ["https://x/b.png"] * 10}, "9"),
                      ({"image_url": "https://example.com/a.png"}, "only fetches media from this machine")]:
        status, reply = http("POST", url, {**ok, **bad}, auth)
        assert status == 400 and word in str(reply["message"]), (bad, reply)
    status, reply = http("GET", url, None, auth)
    assert status == 400 and "generation_id" in str(reply["message"])
    status, reply = http("GET", url + "?generation_id=nope", None, auth)
    assert status == 404 and reply["statusCode"] == 404
    assert stats(sim)["submissions"] == {}
    # As in the docs' own example, duration may be a numeric string.
    status, reply = http("POST", url, {**ok, "duration": "7"}, auth)
    assert status == 200 and reply["status"] == "queued"
    status, reply = http("GET", f"{url}?generation_id={reply['id']}", None, auth)
    assert status == 200 and reply["status"] in ("queued", "generating") and reply["video"] is None


async def test_image_to_video_without_prompt_is_refused_before_sending(runner, sim, tmp_path):
    with pytest.raises(ValidationError) as err:
        await runner.run(GenerationRequest(mode="i2v", version="1.0", duration_s=3,
                                           first_frame=MediaInput.image_bytes(png_bytes(800, 600))),
                         RunOptions(out_dir=str(tmp_path)))
    assert "prompt: AI/ML API requires a prompt in every mode, image-to-video included" in str(err.value)
    assert no_request_reached(sim, NAME)


def test_estimate_says_rate_is_unpublished(capsys):
    assert cli_main(["estimate", "--provider", NAME, "--version", "1.0", "--mode", "t2v", "--duration", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("price unknown") and "aimlapi publishes no USD rate for HappyHorse 1.0 720p" in out
    assert "credits_used" in out and "usd_spent" not in out
    assert cli_main(["estimate", "--provider", NAME, "--version", "1.1", "--mode", "t2v"]) == 2
    assert "does not offer text-to-video on HappyHorse 1.1" in capsys.readouterr().err
