"""The reAPI adapter against the simulated reAPI: 1.1 and 1.0 field meanings, URL-only media, errors, credits."""
import json
import urllib.error
import urllib.request

import pytest

from happyhorse.cli import main as cli_main
from happyhorse.engine.errors import ConfigError, JobFailed, JobTimeout, ProviderError, ValidationError
from happyhorse.engine.http import HttpReply
from happyhorse.engine.pricing import estimate
from happyhorse.engine.request import GenerationRequest, MediaInput
from happyhorse.engine.runner import RunOptions
from happyhorse.providers.registry import get_adapter
from tests.conftest import png_bytes
from tests.contract.helpers import http, image_url, make_runner, no_request_reached, probe, put_blob, sent, stats

NAME = "reapi"
KEY = "rk_live_test123"
SUBMIT_PATH = "/reapi/api/v1/videos/generations"


@pytest.fixture
def runner(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("REAPI_API_KEY", KEY)
    return make_runner(sim, tmp_path, NAME)


async def test_v11_t2v_end_to_end_and_exact_request(runner, sim, tmp_path):
    req = GenerationRequest(mode="t2v", version="1.1", prompt="a coastal road at sunset", resolution="720p",
                            aspect_ratio="21:9", duration_s=3)
    res = await runner.run(req, RunOptions(out_dir=str(tmp_path)))
    p = probe(res.path)
    assert (p["codec"], p["w"], p["h"], p["fps"], p["audio"]) == ("h264", 1680, 720, 24.0, True)
    assert abs(p["dur"] - 3) < 0.1
    assert res.task_id.startswith("task_") and res.cost_usd is None     # 1.1's rate is not published
    post = sent(sim, NAME)[0]
    assert post["path"] == SUBMIT_PATH and post["headers"]["Authorization"] == "***"
    assert post["body"] == {"model": "happyhorse-1-1", "prompt": "a coastal road at sunset", "resolution": "720p",
                            "aspect_ratio": "21:9", "duration": 3}
    polls = sent(sim, NAME, "GET")
    assert polls and all(r["path"] == f"/reapi/api/v1/tasks/{res.task_id}" for r in polls)
    assert stats(sim)["submissions"] == {NAME: 1}


async def test_v11_i2v_first_frame_goes_in_image_urls(runner, sim, tmp_path):
    url = image_url(sim, "first.png")
    res = await runner.run(GenerationRequest(mode="i2v", version="1.1", first_frame=MediaInput.from_url(url, "image"),
                                             duration_s=3), RunOptions(out_dir=str(tmp_path)))
    assert (res.width, res.height) == (960, 720) and abs(res.duration_s - 3) < 0.1
    # prompt is optional for i2v and is left out rather than sent empty; no aspect_ratio (from the image).
    assert sent(sim, NAME)[0]["body"] == {"model": "happyhorse-1-1", "image_urls": [url], "resolution": "720p",
                                    "duration": 3}
    assert stats(sim)["blob_downloads"] == {"first.png": 1}


async def test_v11_r2v_uses_reference_image_urls(runner, sim, tmp_path):
    urls = [image_url(sim, f"ref{i}.png", 500, 500, color=c) for i, c in enumerate(((255, 0, 0), (0, 0, 255)))]
    res = await runner.run(GenerationRequest(mode="r2v", version="1.1", prompt="[Image 1] meets [Image 2]",
                                             reference_images=tuple(MediaInput.from_url(u, "image") for u in urls),
                                             aspect_ratio="1:1", duration_s=3), RunOptions(out_dir=str(tmp_path)))
    assert (res.width, res.height) == (720, 720)
    assert sent(sim, NAME)[0]["body"] == {"model": "happyhorse-1-1", "prompt": "[Image 1] meets [Image 2]",
                                    "reference_image_urls": urls, "resolution": "720p", "aspect_ratio": "1:1",
                                    "duration": 3}
    assert stats(sim)["blob_downloads"] == {"ref0.png": 1, "ref1.png": 1}


@pytest.mark.parametrize("mode, size", [("t2v", (960, 720)), ("i2v", (960, 720)), ("r2v", (960, 720))])
async def test_v10_fields(runner, sim, tmp_path, mode, size):
    req = GenerationRequest(mode=mode, version="1.0", prompt="a horse", duration_s=3)
    # 1.0: its own model id spelling, "720P" in capitals, and an explicit watermark (1.1 has none).
    expect = {"model": "happyhorse-1.0", "prompt": "a horse", "resolution": "720P", "duration": 3, "watermark": False}
    if mode == "t2v":
        req = req.with_(aspect_ratio="4:3")
        expect["size"] = "4:3"                                 # 1.0 names the ratio `size` (reAPI 1.0 page)
    elif mode == "i2v":
        url = image_url(sim, "first.png")
        req = req.with_(first_frame=MediaInput.from_url(url, "image"))
        expect["first_frame_image"] = url                      # 1.0: one URL string, not image_urls
    else:
        urls = [image_url(sim, f"ref{i}.png", 600, 600) for i in range(3)]
        req = req.with_(reference_images=tuple(MediaInput.from_url(u, "image") for u in urls), aspect_ratio="4:3")
        expect.update(image_urls=urls, size="4:3")            # 1.0: image_urls are the REFERENCES
    res = await runner.run(req, RunOptions(out_dir=str(tmp_path)))
    assert (res.width, res.height) == size and abs(res.duration_s - 3) < 0.1
    assert sent(sim, NAME)[0]["body"] == expect
    assert res.cost_usd == pytest.approx(3 * 0.1625)


async def test_v10_edit_with_hosted_source_video(runner, sim, tmp_path):
    src = await runner.run(GenerationRequest(mode="t2v", version="1.0", prompt="source", duration_s=3,
                                             aspect_ratio="4:3"), RunOptions(out_dir=str(tmp_path / "src")))
    with open(src.path, "rb") as fh:
        video = put_blob(sim, "src.mp4", fh.read(), "video/mp4")
    ref = image_url(sim, "ref.png", 500, 500)
    res = await runner.run(GenerationRequest(mode="edit", version="1.0", prompt="make it night",
                                             source_video=MediaInput.from_url(video, "video"),
                                             reference_images=(MediaInput.from_url(ref, "image"),),
                                             audio_setting="origin", source_video_duration_s=3, watermark=True),
                           RunOptions(out_dir=str(tmp_path)))
    assert (res.width, res.height) == (960, 720) and abs(res.duration_s - 3) < 0.1
    assert sent(sim, NAME)[-1]["body"] == {"model": "happyhorse-1.0", "prompt": "make it night", "image_urls": [ref],
                                     "video_url": video, "resolution": "720P", "audio_setting": "origin",
                                     "watermark": True}
    assert stats(sim)["blob_downloads"] == {"src.mp4": 1, "ref.png": 1}
    # "The mode does not change the rate": the output seconds are billed; the input part is marked uncertain.
    assert res.billed_seconds == 3 and res.cost_usd == pytest.approx(3 * 0.1625)
    e = estimate(GenerationRequest(mode="edit", version="1.0", prompt="a", source_video_duration_s=3,
                                   source_video=MediaInput.from_url(video, "video")), NAME, get_adapter(NAME).prices)
    assert e.billed_seconds == 3 and e.usd == pytest.approx(0.4875)
    assert any(line.startswith("uncertain: reapi does not say whether an edit also bills its 3 s of input "
                               "(+0.49 USD)") for line in e.lines), e.lines


async def test_v10_prompt_limit_is_2500_and_refused_before_sending(runner, sim, tmp_path):
    with pytest.raises(ValidationError) as err:
        await runner.run(GenerationRequest(mode="t2v", version="1.0", prompt="x" * 2501, duration_s=3),
                         RunOptions(out_dir=str(tmp_path)))
    assert "prompt: is 2501 characters; reAPI takes at most 2500 on HappyHorse 1.0" in str(err.value)
    assert no_request_reached(sim, NAME)
    # 1.1 keeps its own limit (5000 non-CJK): 2501 characters go through.
    res = await runner.run(GenerationRequest(mode="t2v", version="1.1", prompt="x" * 2501, duration_s=3),
                           RunOptions(out_dir=str(tmp_path)))
    assert res.path and len(sent(sim, NAME)[-1]["body"]["prompt"]) == 2501


@pytest.mark.parametrize("req, expect", [
    (GenerationRequest(mode="edit", version="1.1", prompt="a",
                       source_video=MediaInput.from_url("https://x.example/v.mp4", "video")),
     ["reAPI does not offer video edit on HappyHorse 1.1", "use version 1.0"]),
    (GenerationRequest(mode="t2v", version="1.1", prompt="a", duration_s=3, seed=7),
     ["seed: reAPI takes no seed on HappyHorse 1.1"]),
    (GenerationRequest(mode="t2v", version="1.1", prompt="a", duration_s=3, watermark=True),
     ["watermark: reAPI has no watermark option on HappyHorse 1.1"]),
    (GenerationRequest(mode="t2v", version="1.0", prompt="a", duration_s=3, aspect_ratio="21:9"),
     ["aspect_ratio", "not offered by reAPI on 1.0"]),
    (GenerationRequest(mode="i2v", version="1.1", duration_s=3,
                       first_frame=MediaInput.from_url("data:image/png;base64,iVBORw0KGgo=", "image")),
     ["reAPI rejects data: URIs"]),
])
async def test_unsupported_refused_before_any_request(runner, sim, tmp_path, req, expect):
    with pytest.raises(ValidationError) as err:
        await runner.run(req, RunOptions(out_dir=str(tmp_path)))
    assert all(text in str(err.value) for text in expect), str(err.value)
    assert no_request_reached(sim, NAME)


async def test_seed_is_sent_on_10(runner, sim, tmp_path):
    await runner.run(GenerationRequest(mode="t2v", version="1.0", prompt="a", duration_s=3, seed=77),
                     RunOptions(out_dir=str(tmp_path)))
    assert sent(sim, NAME)[-1]["body"]["seed"] == 77


async def test_bytes_raise_config_error_before_any_request(runner, sim, tmp_path):
    with pytest.raises(ConfigError) as err:
        await runner.run(GenerationRequest(mode="i2v", version="1.1", duration_s=3,
                                           first_frame=MediaInput.image_bytes(png_bytes(800, 600))),
                         RunOptions(out_dir=str(tmp_path)))
    assert "only takes public URLs" in str(err.value)
    assert no_request_reached(sim, NAME)


async def test_bad_key_names_variable_and_hides_key(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("REAPI_API_KEY", "rk_live_invalid_42")
    with pytest.raises(ProviderError) as err:
        await make_runner(sim, tmp_path, NAME).run(GenerationRequest(mode="t2v", prompt="a", duration_s=3),
                                                   RunOptions(out_dir=str(tmp_path)))
    assert err.value.kind == "auth" and err.value.code == "10003" and "REAPI_API_KEY" in str(err.value)
    assert "rk_live_invalid_42" not in str(err.value)


async def test_no_credits_is_402_30001(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("REAPI_API_KEY", "rk_live_nocredit")
    with pytest.raises(ProviderError) as err:
        await make_runner(sim, tmp_path, NAME).run(GenerationRequest(mode="t2v", prompt="a", duration_s=3),
                                                   RunOptions(out_dir=str(tmp_path)))
    assert (err.value.kind, err.value.status, err.value.code) == ("credits", 402, "30001")
    assert stats(sim)["submissions"] == {}


async def test_poll_429_is_retried(runner, sim, tmp_path):
    http("POST", sim.url + "/_sim/faults", {"provider": NAME, "stage": "poll", "kind": "status", "status": 429,
                                            "retry_after": 0})
    res = await runner.run(GenerationRequest(mode="t2v", prompt="a", duration_s=3), RunOptions(out_dir=str(tmp_path)))
    assert res.path and stats(sim)["submissions"] == {NAME: 1}
    fault = next(r for r in sent(sim, NAME, "GET") if r["body"])
    assert fault["path"] == f"/reapi/api/v1/tasks/{res.task_id}"
    # The simulated 429 is reAPI's error shape, code 50001; the adapter reads it as a rate limit.
    http("POST", sim.url + "/_sim/faults", {"provider": NAME, "stage": "poll", "kind": "status", "status": 429,
                                            "retry_after": 3})
    with pytest.raises(urllib.error.HTTPError) as raw:
        urllib.request.urlopen(urllib.request.Request(f"{sim.base_url(NAME)}/api/v1/tasks/{res.task_id}",
                                                      headers={"Authorization": "Bearer k"}))
    body = json.loads(raw.value.read())
    assert raw.value.code == 429 and body["error"]["code"] == 50001
    err = get_adapter(NAME).map_error(HttpReply(429, dict(raw.value.headers), body))
    assert err.kind == "rate_limit" and err.retry_after == 3


async def test_bad_parameter_passes_on_host_message(runner, sim, tmp_path):
    small = image_url(sim, "small.png", 300, 300)       # fine for a first frame, too small for a reference
    with pytest.raises(ProviderError) as err:
        await runner.run(GenerationRequest(mode="r2v", version="1.1", prompt="[Image 1]", duration_s=3,
                                           reference_images=(MediaInput.from_url(small, "image"),)),
                         RunOptions(out_dir=str(tmp_path)))
    assert (err.value.kind, err.value.status, err.value.code) == ("bad_request", 400, "20002")
    assert "reference image 1: image 300x300 is smaller than 400 px (code 20002)" in str(err.value)


async def test_failed_job_reports_host_reason(runner, sim, tmp_path):
    http("POST", sim.url + "/_sim/faults", {"provider": NAME, "stage": "job", "kind": "fail",
                                            "reason": "content moderation rejected the output"})
    with pytest.raises(JobFailed) as err:
        await runner.run(GenerationRequest(mode="t2v", prompt="a", duration_s=3), RunOptions(out_dir=str(tmp_path)))
    assert "content moderation rejected the output" in str(err.value) and err.value.task_id.startswith("task_")
    assert err.value.code          # the failed task's error is reAPI's {code, message, request_id} envelope
    assert runner.ledger.find_task(err.value.task_id).status == "failed"


async def test_stuck_job_is_reported_by_the_running_timeout(runner, sim, tmp_path):
    # reAPI has no queued state: a job stuck before it starts reads "processing", so the queue timeout cannot
    # see it and the running timeout is what ends the wait.
    http("POST", sim.url + "/_sim/faults", {"provider": NAME, "stage": "job", "kind": "stuck"})
    with pytest.raises(JobTimeout) as err:
        await runner.run(GenerationRequest(mode="t2v", prompt="a", duration_s=3),
                         RunOptions(out_dir=str(tmp_path), timeout_s=1.0, queue_timeout_s=1.0))
    assert "still running after 1 s" in str(err.value) and err.value.task_id.startswith("task_")


def test_reply_parsing():
    ad = get_adapter(NAME)
    done = ad.parse_poll(HttpReply(200, {}, {"id": "task_1", "model": "happyhorse-1-1", "status": "completed",
                                             "output": {"video_urls": ["https://cdn.reapi.ai/0.mp4"]},
                                             "error": None}))
    assert (done.state, done.video_url) == ("succeeded", "https://cdn.reapi.ai/0.mp4")
    assert ad.parse_poll(HttpReply(200, {}, {"id": "task_1", "status": "processing", "output": None})
                         ).state == "running"
    failed = ad.parse_poll(HttpReply(200, {}, {"id": "task_1", "status": "failed", "error": "upstream timeout"}))
    assert (failed.state, failed.error_message) == ("failed", "upstream timeout")
    # A word reAPI's docs do not list is waited on, not an end (engine/follow.py); no status at all is a changed API.
    odd = ad.parse_poll(HttpReply(200, {}, {"id": "task_1", "status": "exploded"}))
    assert (odd.state, odd.raw_state) == ("unrecognized", "exploded") and not odd.state.finished
    with pytest.raises(ProviderError) as err:
        ad.parse_poll(HttpReply(200, {}, {"id": "task_1", "output": None}))
    assert err.value.kind == "protocol"
    bad = ad.map_error(HttpReply(400, {}, {"error": {"code": 20002, "message": "both image fields set"}}))
    assert bad.kind == "bad_request" and "both image fields set (code 20002)" in str(bad)
    assert ad.map_error(HttpReply(401, {}, {"error": {"code": 10004, "message": "revoked"}})).kind == "auth"


def test_simulator_protocol_rules(sim):
    url = sim.base_url(NAME) + "/api/v1/videos/generations"
    auth = {"Authorization": "Bearer rk_live_x"}
    ok = {"model": "happyhorse-1-1", "prompt": "a", "duration": 3}
    status, reply = http("POST", url, ok)
    assert status == 401 and reply["error"]["code"] == 10001 and set(reply["error"]) == {"code", "message",
                                                                                          "request_id"}
    status, reply = http("POST", url, ok, {"Authorization": "rk_live_x"})
    assert status == 401 and reply["error"]["code"] == 10002
    status, reply = http("POST", url, ok, {"Authorization": "Bearer rk_live_invalid"})
    assert status == 401 and reply["error"]["code"] == 10003
    img = "http://127.0.0.1:1/a.png"
    for bad, word in [({"image_urls": [img], "reference_image_urls": [img]}, "mutually exclusive"),
                      ({"image_urls": ["data:image/png;base64,iVBORw0KGgo="]}, "data: URIs are rejected"),
                      ({"reference_image_urls": ["data:image/png;base64,iVBORw0KGgo="]}, "data: URIs"),
                      ({"image_urls": [img, img]}, "exactly 1"),
                      ({"prompt": ""}, "prompt is required for T2V"),
                      ({"prompt": "", "reference_image_urls": [img]}, "prompt is required for R2V"),
                      ({"video_url": img}, "does not take video_url"),
                      ({"model": "happyhorse-1.0", "reference_image_urls": [img]}, "reference_image_urls"),
                      ({"model": "happyhorse-1.0", "first_frame_image": img, "image_urls": [img]},
                       "mutually exclusive"),
                      ({"model": "happyhorse-1.0", "aspect_ratio": "16:9"}, "does not take aspect_ratio"),
                      ({"model": "happyhorse-1.0", "size": "21:9"}, "size must be one of"),
                      ({"size": "16:9"}, "does not take size"),
                      ({"model": "happyhorse-1.0", "prompt": "x" * 2501}, "at most 2500 characters"),
                      ({"model": "happyhorse-1.0", "resolution": "720p"}, "720P or 1080P"),
                      ({"resolution": "720P"}, "720p or 1080p"), ({"watermark": False}, "does not take watermark"),
                      ({"model": "happyhorse-1.0", "watermark": "off"}, "watermark"),
                      ({"model": "happyhorse-1-0"}, "model"),
                      ({"model": "happyhorse-1.0", "video_url": "data:video/mp4;base64,AAAA"}, "data: URIs"),
                      ({"duration": "5"}, "duration"), ({"duration": 16}, "duration"),
                      ({"resolution": "4k"}, "resolution"), ({"model": "happyhorse-2"}, "model")]:
        status, reply = http("POST", url, {**ok, **bad}, auth)
        assert status == 400 and reply["error"]["code"] == 20002 and word in reply["error"]["message"], (bad, reply)
    status, reply = http("GET", sim.base_url(NAME) + "/api/v1/tasks/task_nope", None, auth)
    assert status == 404 and "not found" in reply["error"]["message"]
    assert stats(sim)["submissions"] == {}
    # Over-long prompts are truncated upstream, not refused.
    status, reply = http("POST", url, {**ok, "prompt": "x" * 6000}, auth)
    assert status == 200 and reply["id"].startswith("task_") and reply["status"] == "processing"
    status, task = http("GET", f"{sim.base_url(NAME)}/api/v1/tasks/{reply['id']}", None, auth)
    assert status == 200 and task["model"] == "happyhorse-1-1" and task["output"] is None
    assert isinstance(task["created_at"], int) and task["error"] is None


@pytest.mark.parametrize("resolution, seconds, usd, credits", [
    ("720p", 3, 0.4875, 488), ("720p", 5, 0.8125, 813), ("1080p", 5, 1.4375, 1438), ("1080p", 7, 2.0125, 2013),
    ("1080p", 15, 4.3125, 4313),
])
def test_v10_price_is_ceil_of_usd_times_1000(resolution, seconds, usd, credits):
    e = estimate(GenerationRequest(mode="t2v", version="1.0", prompt="a", resolution=resolution,
                                   duration_s=seconds), NAME, get_adapter(NAME).prices)
    assert e.usd == pytest.approx(usd) and e.credits == credits


def test_v11_price_is_unknown_not_invented():
    e = estimate(GenerationRequest(mode="t2v", version="1.1", prompt="a", duration_s=5), NAME,
                 get_adapter(NAME).prices)
    assert e.usd is None and e.credits is None and "publishes no USD rate for HappyHorse 1.1" in e.note


def test_estimate_cli(capsys):
    assert cli_main(["estimate", "--provider", NAME, "--version", "1.0", "--mode", "t2v", "--duration", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("0.49 USD") and "charged as 488 credits" in out
    assert cli_main(["estimate", "--provider", NAME, "--version", "1.1", "--mode", "t2v", "--duration", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("price unknown") and "reapi publishes no USD rate for HappyHorse 1.1 720p" in out
