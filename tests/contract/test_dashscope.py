"""The DashScope adapter against the simulated DashScope: all four modes, the exact requests, every error."""

import pytest

from happyhorse.engine.errors import JobCancelled, JobFailed, ProviderError
from happyhorse.engine.request import GenerationRequest, MediaInput
from happyhorse.engine.runner import JobRunner, RunOptions
from happyhorse.providers.registry import resolve_endpoint
from tests.conftest import png_bytes
from tests.contract.helpers import http, make_runner, probe, stats


@pytest.fixture
def runner(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-key-123")
    return make_runner(sim, tmp_path, "dashscope")


async def test_t2v_end_to_end_and_exact_request(runner, sim, tmp_path):
    req = GenerationRequest(mode="t2v", version="1.1", prompt="a horse on a beach", resolution="720p",
                            aspect_ratio="9:16", duration_s=3, seed=42)
    res = await runner.run(req, RunOptions(out_dir=str(tmp_path)))
    p = probe(res.path)
    assert (p["codec"], p["w"], p["h"], p["fps"], p["audio"]) == ("h264", 720, 1280, 24.0, True)
    assert abs(p["dur"] - 3) < 0.1
    assert res.cost_usd == pytest.approx(3 * 0.14) and res.billed_seconds == 3
    sent = [r for r in stats(sim)["requests"]["dashscope"] if r["method"] == "POST"][0]
    assert sent["path"] == "/dashscope/api/v1/services/aigc/video-generation/video-synthesis"
    assert sent["headers"]["X-DashScope-Async"] == "enable"
    assert sent["headers"]["Authorization"] == "***"      # the simulator's log redacts it
    assert sent["body"] == {"model": "happyhorse-1.1-t2v", "input": {"prompt": "a horse on a beach"},
                            "parameters": {"resolution": "720P", "watermark": False, "ratio": "9:16",
                                           "duration": 3, "seed": 42}}
    assert stats(sim)["submissions"] == {"dashscope": 1}


async def test_i2v_takes_image_ratio(runner, sim, tmp_path):
    first = MediaInput.image_bytes(png_bytes(800, 600))
    res = await runner.run(GenerationRequest(mode="i2v", version="1.0", first_frame=first, duration_s=3,
                                             resolution="720p"), RunOptions(out_dir=str(tmp_path)))
    assert (res.width, res.height) == (960, 720)
    body = stats(sim)["requests"]["dashscope"][0]["body"]
    assert body["model"] == "happyhorse-1.0-i2v" and "ratio" not in body["parameters"]
    assert body["input"]["media"][0]["type"] == "first_frame"
    assert body["input"]["media"][0]["url"].startswith("data:image/png;base64,")


async def test_r2v_sends_references_in_order(runner, sim, tmp_path):
    refs = tuple(MediaInput.image_bytes(png_bytes(500, 500, color=c)) for c in ((255, 0, 0), (0, 0, 255)))
    res = await runner.run(GenerationRequest(mode="r2v", prompt="[Image 1] meets [Image 2]", reference_images=refs,
                                             aspect_ratio="1:1", duration_s=3), RunOptions(out_dir=str(tmp_path)))
    assert (res.width, res.height) == (720, 720)
    media = stats(sim)["requests"]["dashscope"][0]["body"]["input"]["media"]
    assert [m["type"] for m in media] == ["reference_image", "reference_image"]


async def test_edit_keeps_source_and_bills_input_plus_output(runner, sim, tmp_path):
    src = await runner.run(GenerationRequest(mode="t2v", prompt="source", duration_s=4, aspect_ratio="4:3"),
                           RunOptions(out_dir=str(tmp_path / "src")))
    video = MediaInput.from_path(src.path, "video")
    res = await runner.run(GenerationRequest(mode="edit", version="1.0", prompt="make it night",
                                             source_video=video, audio_setting="origin"),
                           RunOptions(out_dir=str(tmp_path)))
    assert (res.width, res.height) == (960, 720) and abs(res.duration_s - 4) < 0.1
    assert res.billed_seconds == pytest.approx(8) and res.cost_usd == pytest.approx(8 * 0.14)
    body = [r for r in stats(sim)["requests"]["dashscope"] if r["method"] == "POST"][-1]["body"]
    assert body["model"] == "happyhorse-1.0-video-edit" and body["parameters"]["audio_setting"] == "origin"
    assert "duration" not in body["parameters"] and "ratio" not in body["parameters"]


async def test_bad_key_names_variable(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-invalid")
    r = JobRunner(resolve_endpoint("dashscope", base_url=sim.base_url("dashscope")))
    with pytest.raises(ProviderError) as err:
        await r.run(GenerationRequest(mode="t2v", prompt="a", duration_s=3), RunOptions(out_dir=str(tmp_path)))
    assert err.value.kind == "auth" and "DASHSCOPE_API_KEY" in str(err.value)
    assert "sk-invalid" not in str(err.value)


async def test_arrearage_is_credits(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-nocredit")
    r = JobRunner(resolve_endpoint("dashscope", base_url=sim.base_url("dashscope")))
    with pytest.raises(ProviderError) as err:
        await r.run(GenerationRequest(mode="t2v", prompt="a", duration_s=3), RunOptions(out_dir=str(tmp_path)))
    assert err.value.kind == "credits" and "Arrearage" in str(err.value)


def test_simulator_protocol_rules(sim):
    base = sim.base_url("dashscope")
    auth = {"Authorization": "Bearer sk-x"}
    body = {"model": "happyhorse-1.1-t2v", "input": {"prompt": "a"}, "parameters": {"duration": 3}}
    url = base + "/api/v1/services/aigc/video-generation/video-synthesis"
    status, reply = http("POST", url, body, auth)                               # no async header
    assert status == 403 and reply["code"] == "AccessDenied"
    status, reply = http("POST", url, body, {"X-DashScope-Async": "enable"})     # no key
    assert status == 401 and reply["code"] == "InvalidApiKey"
    hdrs = {**auth, "X-DashScope-Async": "enable"}
    status, reply = http("POST", url, {**body, "model": "happyhorse-1.1-video-edit"}, hdrs)
    assert status == 404 and reply["code"] == "ModelNotFound"
    status, reply = http("POST", url, {**body, "parameters": {"duration": 20}}, hdrs)
    assert status == 400 and reply["code"] == "InvalidParameter" and "duration" in reply["message"]
    status, reply = http("POST", url, {**body, "parameters": {"ratio": "21:9"}, "model": "happyhorse-1.0-t2v"}, hdrs)
    assert status == 400 and "ratio" in reply["message"]
    status, reply = http("GET", base + "/api/v1/tasks/no-such-task", None, auth)
    assert status == 200 and reply["output"]["task_status"] == "UNKNOWN"
    assert stats(sim)["submissions"] == {}


def test_cancel_only_while_pending(sim):
    base = sim.base_url("dashscope")
    hdrs = {"Authorization": "Bearer sk-x", "X-DashScope-Async": "enable"}
    http("POST", sim.url + "/_sim/timing", {"queue_s": 5, "process_s": 0.5})
    url = base + "/api/v1/services/aigc/video-generation/video-synthesis"
    _, reply = http("POST", url, {"model": "happyhorse-1.1-t2v", "input": {"prompt": "a"},
                                  "parameters": {"duration": 3}}, hdrs)
    task = reply["output"]["task_id"]
    assert http("POST", f"{base}/api/v1/tasks/{task}/cancel", None, hdrs)[0] == 200
    assert http("GET", f"{base}/api/v1/tasks/{task}", None, hdrs)[1]["output"]["task_status"] == "CANCELED"
    http("POST", sim.url + "/_sim/timing", {"queue_s": 0, "process_s": 5})
    _, reply = http("POST", url, {"model": "happyhorse-1.1-t2v", "input": {"prompt": "a"},
                                  "parameters": {"duration": 3}}, hdrs)
    status, err = http("POST", f"{base}/api/v1/tasks/{reply['output']['task_id']}/cancel", None, hdrs)
    assert status == 400 and err["code"] == "UnsupportedOperation"


async def test_failed_job_reports_reason(runner, sim, tmp_path):
    http("POST", sim.url + "/_sim/faults", {"provider": "dashscope", "stage": "job", "kind": "fail",
                                            "reason": "content moderation rejected the output"})
    with pytest.raises(JobFailed) as err:
        await runner.run(GenerationRequest(mode="t2v", prompt="a", duration_s=3), RunOptions(out_dir=str(tmp_path)))
    assert "content moderation" in str(err.value) and err.value.task_id
    rec = runner.ledger.find_task(err.value.task_id)
    assert rec.status == "failed" and "moderation" in rec.error


async def test_cancel_while_queued_cancels_at_provider(runner, sim, tmp_path):
    http("POST", sim.url + "/_sim/timing", {"queue_s": 30, "process_s": 1})
    seen = []

    def on_progress(p):
        seen.append(p)

    def is_cancelled():
        return any(p.phase == "queued" for p in seen)

    import time
    t0 = time.monotonic()
    with pytest.raises(JobCancelled) as err:
        await runner.run(GenerationRequest(mode="t2v", prompt="a", duration_s=3), RunOptions(out_dir=str(tmp_path)),
                         on_progress=on_progress, is_cancelled=is_cancelled)
    assert time.monotonic() - t0 < 3
    assert "not billed" in str(err.value)
    job = stats(sim)["jobs"][err.value.task_id]
    assert job["canceled"] is True
    assert runner.ledger.find_task(err.value.task_id).status == "canceled"


async def test_task_id_recorded_before_polling(runner, sim, tmp_path):
    statuses_at_first_poll = []

    def on_progress(p):
        if p.phase in ("queued", "running") and not statuses_at_first_poll:
            statuses_at_first_poll.append(runner.ledger.find_task(p.task_id))

    # Long enough that a poll sees it unfinished (a fresh job's first poll waits for the pace).
    http("POST", sim.url + "/_sim/faults", {"provider": "dashscope", "stage": "job", "kind": "slow", "seconds": 2})
    res = await runner.run(GenerationRequest(mode="t2v", prompt="a", duration_s=3), RunOptions(out_dir=str(tmp_path)),
                           on_progress=on_progress)
    assert statuses_at_first_poll[0] is not None and statuses_at_first_poll[0].task_id == res.task_id
    final = runner.ledger.get(res.ledger_id)
    assert final.status == "done" and final.local_path == res.path
    assert [h["status"] for h in final.history][:2] == ["submitting", "submitted"]


async def test_collect_by_task_id(runner, sim, tmp_path):
    res = await runner.run(GenerationRequest(mode="t2v", prompt="a", duration_s=3), RunOptions(out_dir=str(tmp_path)))
    again = await runner.collect(res.task_id, opts=RunOptions(out_path=str(tmp_path / "again.mp4")))
    assert again.path.endswith("again.mp4") and (again.width, again.height) == (res.width, res.height)
    assert stats(sim)["submissions"] == {"dashscope": 1}


async def test_injected_poll_faults_are_retried(runner, sim, tmp_path):
    for status in (429, 503):
        http("POST", sim.url + "/_sim/faults", {"provider": "dashscope", "stage": "poll", "kind": "status",
                                                "status": status, "retry_after": 0})
    http("POST", sim.url + "/_sim/faults", {"provider": "dashscope", "stage": "poll", "kind": "drop"})
    res = await runner.run(GenerationRequest(mode="t2v", prompt="a", duration_s=3), RunOptions(out_dir=str(tmp_path)))
    assert res.path and stats(sim)["submissions"] == {"dashscope": 1}


async def test_submit_dropped_after_accept_is_found_in_the_task_list_not_resent(runner, sim, tmp_path):
    http("POST", sim.url + "/_sim/faults", {"provider": "dashscope", "stage": "submit", "kind": "drop_after"})
    res = await runner.run(GenerationRequest(mode="t2v", prompt="a", duration_s=3), RunOptions(out_dir=str(tmp_path)))
    assert res.path and stats(sim)["submissions"] == {"dashscope": 1}
    assert runner.ledger.recent(1)[0].status == "done" and runner.ledger.recent(1)[0].task_id == res.task_id


async def test_output_file_is_readable_by_others(runner, sim, tmp_path):
    import stat as st
    res = await runner.run(GenerationRequest(mode="t2v", prompt="perm", duration_s=3), RunOptions(out_dir=str(tmp_path)))
    assert st.S_IMODE(__import__("os").stat(res.path).st_mode) == 0o644


async def test_cancelling_a_collect_leaves_the_job_running(runner, sim, tmp_path):
    http("POST", sim.url + "/_sim/timing", {"queue_s": 30, "process_s": 1})
    hdrs = {"Authorization": "Bearer sk-x", "X-DashScope-Async": "enable"}
    _, reply = http("POST", sim.base_url("dashscope") + "/api/v1/services/aigc/video-generation/video-synthesis",
                    {"model": "happyhorse-1.1-t2v", "input": {"prompt": "elsewhere"}, "parameters": {"duration": 3}},
                    hdrs)
    task = reply["output"]["task_id"]
    polled = []
    with pytest.raises(JobCancelled) as err:
        await runner.collect(task, opts=RunOptions(out_dir=str(tmp_path)),
                             on_progress=lambda p: polled.append(p.phase), is_cancelled=lambda: "queued" in polled)
    assert "left running" in str(err.value)
    assert stats(sim)["jobs"][task]["canceled"] is False


def _clip(tmp_path, width, height, seconds=3):
    from happyhorse.simulator.video import ClipSpec, render_clip

    path = str(tmp_path / f"clip{width}x{height}.mp4")
    render_clip(ClipSpec(width=width, height=height, duration_s=seconds), path)
    return MediaInput.from_path(path, "video")


async def test_edit_ratio_is_optional_and_sent_only_when_chosen(runner, sim, tmp_path):
    video = _clip(tmp_path, 640, 480)
    res = await runner.run(GenerationRequest(mode="edit", version="1.0", prompt="make it square",
                                             source_video=video, aspect_ratio="1:1"),
                           RunOptions(out_dir=str(tmp_path)))
    assert (res.width, res.height) == (720, 720)
    body = [r for r in stats(sim)["requests"]["dashscope"] if r["method"] == "POST"][-1]["body"]
    assert body["model"] == "happyhorse-1.0-video-edit" and body["parameters"]["ratio"] == "1:1"


async def test_edit_limits_follow_the_edit_page(runner, sim, tmp_path):
    from happyhorse.engine.errors import ValidationError

    # The source video's shape must be within 1:2.5..2.5:1; refused before anything is sent.
    with pytest.raises(ValidationError) as err:
        await runner.run(GenerationRequest(mode="edit", version="1.0", prompt="x",
                                           source_video=_clip(tmp_path, 1700, 640)), RunOptions(out_dir=str(tmp_path)))
    assert "source_video: is 1700x640; its shape must be between 1:2.5 and 2.5:1" in str(err.value)
    # Edit references: short side >= 300 px (not reference-to-video's 400) and at most 10 MB.
    import io
    import os

    from PIL import Image

    big = io.BytesIO()
    Image.frombytes("RGB", (2000, 2000), os.urandom(2000 * 2000 * 3)).save(big, format="PNG")
    with pytest.raises(ValidationError) as err:
        await runner.run(GenerationRequest(mode="edit", version="1.0", prompt="x",
                                           source_video=_clip(tmp_path, 640, 480),
                                           reference_images=(MediaInput.image_bytes(big.getvalue()),)),
                         RunOptions(out_dir=str(tmp_path)))
    assert "the limit is 10 MB" in str(err.value)
    assert stats(sim)["submissions"] == {}
    res = await runner.run(GenerationRequest(mode="edit", version="1.0", prompt="x",
                                             source_video=_clip(tmp_path, 640, 480),
                                             reference_images=(MediaInput.image_bytes(png_bytes(350, 350)),)),
                           RunOptions(out_dir=str(tmp_path)))
    assert res.path and stats(sim)["submissions"] == {"dashscope": 1}


def test_simulated_edit_refuses_what_the_edit_page_refuses(sim, tmp_path):
    import base64

    hdrs = {"Authorization": "Bearer sk-x", "X-DashScope-Async": "enable"}
    url = sim.base_url("dashscope") + "/api/v1/services/aigc/video-generation/video-synthesis"

    def edit(video, refs=(), **params):
        media = [{"type": "video", "url": "data:video/mp4;base64," + base64.b64encode(video.data).decode()}]
        media += [{"type": "reference_image", "url": "data:image/png;base64," + base64.b64encode(r).decode()}
                  for r in refs]
        return http("POST", url, {"model": "happyhorse-1.0-video-edit", "input": {"prompt": "x", "media": media},
                                  "parameters": params}, hdrs)

    status, reply = edit(_clip(tmp_path, 1700, 640))
    assert status == 400 and "aspect ratio out of range 1:2.5..2.5:1" in reply["message"]
    status, reply = edit(_clip(tmp_path, 640, 480), ratio="21:9")
    assert status == 400 and "ratio" in reply["message"]
    status, reply = edit(_clip(tmp_path, 640, 480), refs=[png_bytes(280, 280)])
    assert status == 400 and "smaller than 300 px" in reply["message"]
    status, reply = edit(_clip(tmp_path, 640, 480), refs=[png_bytes(350, 350)], ratio="9:16")
    assert status == 200 and reply["output"]["task_status"] == "PENDING"


async def test_edit_ratio_is_refused_where_the_host_has_none(sim, monkeypatch, tmp_path):
    from happyhorse.engine.errors import ValidationError

    monkeypatch.setenv("APIXO_API_KEY", "k")
    with pytest.raises(ValidationError) as err:
        await make_runner(sim, tmp_path, "apixo").run(
            GenerationRequest(mode="edit", version="1.0", prompt="x", aspect_ratio="1:1",
                              source_video=MediaInput.from_url("https://x.example/v.mp4", "video")),
            RunOptions(out_dir=str(tmp_path)))
    assert "aspect_ratio: does not apply to video edit at APIXO" in str(err.value)
