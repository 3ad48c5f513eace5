"""DashScope's temporary upload store against the simulator: getPolicy -> OSS form POST -> oss:// + resolve header,
the simulator's OSS checks, the upload cache, and failures that stop before any submit."""
import base64

import aiohttp
import pytest

from happyhorse.engine.errors import ProviderError, ValidationError
from happyhorse.engine.http import HttpReply
from happyhorse.engine.request import GenerationRequest, MediaInput
from happyhorse.engine.runner import RunOptions
from happyhorse.engine.uploads import choice
from happyhorse.providers.dashscope import DashScopeAdapter
from happyhorse.simulator.protocols import dashscope as sim_dashscope
from tests.conftest import png_bytes
from tests.contract.helpers import http, make_runner, stats

KEY = "sk-upload-test-key"
SUBMIT = "/dashscope/api/v1/services/aigc/video-generation/video-synthesis"


@pytest.fixture
def runner(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
    return make_runner(sim, tmp_path, "dashscope")


def requests(sim, path_part, method=None):
    return [r for r in stats(sim)["requests"].get("dashscope", [])
            if path_part in r["path"] and (method is None or r["method"] == method)]


def i2v(image: bytes, prompt="a horse") -> GenerationRequest:
    return GenerationRequest(mode="i2v", version="1.1", prompt=prompt, duration_s=3,
                             first_frame=MediaInput.image_bytes(image))


def job_of(sim, task_id):
    return sim.core.jobs[task_id]


async def test_i2v_first_frame_through_the_store_end_to_end(runner, sim, tmp_path):
    image = png_bytes(800, 600)
    res = await runner.run(i2v(image), RunOptions(out_dir=str(tmp_path), upload="provider-store"))
    assert (res.width, res.height) == (960, 720)

    (policy,) = requests(sim, "/api/v1/uploads")
    assert policy["method"] == "GET" and "action=getPolicy" in policy["path"]
    assert "model=happyhorse-1.1-i2v" in policy["path"] and policy["headers"]["Authorization"] == "***"
    (post,) = requests(sim, "/dashscope/oss")
    assert "Authorization" not in post["headers"]
    assert post["body"]["fields"] == ["OSSAccessKeyId", "Signature", "policy", "key", "x-oss-object-acl",
                                      "x-oss-forbid-overwrite", "success_action_status", "file"]
    (submit,) = requests(sim, SUBMIT)
    url = submit["body"]["input"]["media"][0]["url"]
    assert url.startswith("oss://dashscope-instant/") and url.endswith(".png")
    assert submit["headers"]["X-DashScope-OssResourceResolve"] == "enable"
    assert job_of(sim, res.task_id).spec.first_frame == image       # the very bytes we had
    assert sim.core.blobs[url[len("oss://"):]] == (image, "image/png")


async def test_auto_sends_large_files_to_the_store_and_small_ones_inline(runner, sim, tmp_path, monkeypatch):
    monkeypatch.setattr(choice, "INLINE_MAX_BYTES", 10_000)
    refs = (MediaInput.image_bytes(png_bytes(500, 500)),                       # ~ a few KB: inline
            MediaInput.image_bytes(png_bytes(900, 900, fmt="BMP")))            # 2.4 MB: store
    req = GenerationRequest(mode="r2v", prompt="[Image 1] meets [Image 2]", reference_images=refs,
                            aspect_ratio="1:1", duration_s=3)
    assert len(refs[0].data) <= 10_000 < len(refs[1].data)
    await runner.run(req, RunOptions(out_dir=str(tmp_path)))
    media = requests(sim, SUBMIT)[0]["body"]["input"]["media"]
    assert media[0]["url"].startswith("data:image/png;base64,") and media[1]["url"].startswith("oss://")


async def test_same_image_twice_uploads_once(runner, sim, tmp_path):
    image = png_bytes(640, 480, color=(10, 200, 30))
    opts = RunOptions(out_dir=str(tmp_path), upload="provider-store")
    first = await runner.run(i2v(image, "first"), opts)
    second = await runner.run(i2v(image, "second"), opts)         # another job, same first frame
    assert len(requests(sim, "/api/v1/uploads")) == 1 and len(requests(sim, "/dashscope/oss")) == 1
    urls = [r["body"]["input"]["media"][0]["url"] for r in requests(sim, SUBMIT)]
    assert len(urls) == 2 and urls[0] == urls[1]
    assert job_of(sim, second.task_id).spec.first_frame == image and first.task_id != second.task_id


async def test_same_image_for_another_model_is_uploaded_again(runner, sim, tmp_path):
    """A stored file only resolves for the model its policy named, so the cache keeps models apart."""
    image = png_bytes(640, 480)
    await runner.run(i2v(image), RunOptions(out_dir=str(tmp_path), upload="provider-store"))
    r2v = GenerationRequest(mode="r2v", prompt="[Image 1] runs", reference_images=(MediaInput.image_bytes(
        png_bytes(640, 480)),), aspect_ratio="1:1", duration_s=3)
    await runner.run(r2v, RunOptions(out_dir=str(tmp_path), upload="provider-store"))
    policies = requests(sim, "/api/v1/uploads")
    assert ["model=happyhorse-1.1-i2v" in policies[0]["path"], "model=happyhorse-1.1-r2v" in policies[1]["path"]] \
        == [True, True]
    assert len(requests(sim, "/dashscope/oss")) == 2


async def test_upload_faults_are_retried_or_reported_before_submit(runner, sim, tmp_path):
    for status in (503, 429):       # the policy GET is idempotent: retried
        http("POST", sim.url + "/_sim/faults", {"provider": "dashscope", "stage": "upload", "kind": "status",
                                                "status": status, "retry_after": 0})
    res = await runner.run(i2v(png_bytes()), RunOptions(out_dir=str(tmp_path), upload="provider-store"))
    assert res.path and stats(sim)["submissions"] == {"dashscope": 1}

    http("POST", sim.url + "/_sim/faults", {"provider": "dashscope", "stage": "upload", "kind": "slow", "seconds": 0})
    http("POST", sim.url + "/_sim/faults", {"provider": "dashscope", "stage": "upload", "kind": "status",
                                            "status": 403, "message": "denied by the store"})
    with pytest.raises(ProviderError) as err:       # the form POST is refused: reported, nothing submitted
        await runner.run(i2v(png_bytes(700, 500)), RunOptions(out_dir=str(tmp_path), upload="provider-store"))
    assert "upload store refused the file" in str(err.value) and "nothing was submitted" in str(err.value)
    assert stats(sim)["submissions"] == {"dashscope": 1}
    assert KEY not in str(err.value)


async def test_file_over_the_store_limit_is_refused_before_the_post(runner, sim, tmp_path, monkeypatch):
    monkeypatch.setattr(sim_dashscope, "MAX_FILE_SIZE_MB", 1)
    big = png_bytes(900, 900, fmt="BMP")                    # 2.4 MB
    with pytest.raises(ValidationError) as err:
        await runner.run(i2v(big), RunOptions(out_dir=str(tmp_path), upload="provider-store"))
    assert "first_frame: is 2.4 MB; DashScope's upload store takes at most 1 MB" in str(err.value)
    assert requests(sim, "/dashscope/oss") == [] and stats(sim)["submissions"] == {}


# ------------------------------------------------------------------------------------------ the simulator's OSS


async def get_policy(sim, model="happyhorse-1.1-i2v", key=KEY):
    async with aiohttp.ClientSession() as s:
        async with s.get(sim.base_url("dashscope") + "/api/v1/uploads",
                         params={"action": "getPolicy", "model": model},
                         headers={"Authorization": f"Bearer {key}"} if key else {}) as resp:
            return resp.status, await resp.json()


async def post_form(url, fields, file_at=None, headers=None):
    form = aiohttp.FormData()
    parts = list(fields)
    parts.insert(len(parts) if file_at is None else file_at, ("file", None))
    for name, value in parts:
        if name == "file":
            form.add_field("file", png_bytes(400, 400), filename="a.png", content_type="image/png")
        else:
            form.add_field(name, value)
    async with aiohttp.ClientSession() as s:
        async with s.post(url, data=form, headers=headers or {}) as resp:
            return resp.status, await resp.text()


def form_fields(policy, name="a.png", **override):
    fields = dict(DashScopeAdapter().upload_form(DashScopeAdapter().parse_upload_policy(
        HttpReply(200, {}, policy)), name).fields)
    fields.update(override)
    return list(fields.items())


async def test_sim_policy_needs_key_and_known_model(sim):
    assert (await get_policy(sim, key=None))[1]["code"] == "InvalidApiKey"
    status, body = await get_policy(sim, model="happyhorse-9-t2v")
    assert status == 404 and body["code"] == "ModelNotFound"
    status, body = await get_policy(sim)
    data = body["data"]
    assert status == 200 and data["upload_host"] == sim.url + "/dashscope/oss"
    assert data["max_file_size_mb"] == 100 and data["x_oss_forbid_overwrite"] == "true"


@pytest.mark.parametrize("case, expect", [
    ("authorization", (400, "must not carry an Authorization header")),
    ("bad_signature", (403, "SignatureDoesNotMatch")),
    ("file_not_last", (400, "the file field must be the last field")),
    ("key_outside_dir", (403, "Policy Condition failed: $key")),
    ("acl_changed", (403, "Policy Condition failed: x-oss-object-acl")),
    ("wrong_access_key", (403, "InvalidAccessKeyId")),
])
async def test_sim_oss_refuses_bad_forms(sim, case, expect):
    _, body = await get_policy(sim)
    fields, file_at, headers = form_fields(body), None, None
    if case == "authorization":
        headers = {"Authorization": f"Bearer {KEY}"}
    elif case == "bad_signature":
        fields = form_fields(body, Signature=base64.b64encode(b"forged" * 4).decode())
    elif case == "file_not_last":
        file_at = 3
    elif case == "key_outside_dir":
        fields = form_fields(body, key="elsewhere/a.png")
    elif case == "acl_changed":
        fields = form_fields(body, **{"x-oss-object-acl": "public-read"})
    else:
        fields = form_fields(body, OSSAccessKeyId="LTAI-someone-else")
    status, text = await post_form(body["data"]["upload_host"], fields, file_at, headers)
    assert status == expect[0] and expect[1] in text and text.startswith("<?xml")
    assert sim.core.blobs == {}


async def test_sim_oss_refuses_overwrite_and_expired_policy(sim, monkeypatch):
    _, body = await get_policy(sim)
    assert (await post_form(body["data"]["upload_host"], form_fields(body)))[0] == 200
    status, text = await post_form(body["data"]["upload_host"], form_fields(body))
    assert status == 409 and "FileAlreadyExists" in text
    monkeypatch.setattr(sim_dashscope, "POLICY_TTL_S", -1)
    _, body = await get_policy(sim)
    status, text = await post_form(body["data"]["upload_host"], form_fields(body))
    assert status == 403 and "Policy expired" in text


async def test_sim_submit_needs_resolve_header_and_same_model(sim):
    _, body = await get_policy(sim, model="happyhorse-1.1-i2v")
    assert (await post_form(body["data"]["upload_host"], form_fields(body)))[0] == 200
    url = f"oss://{body['data']['upload_dir']}/a.png"
    submit = {"model": "happyhorse-1.1-i2v", "input": {"prompt": "", "media": [{"type": "first_frame", "url": url}]},
              "parameters": {"duration": 3, "resolution": "720P"}}
    headers = {"Authorization": f"Bearer {KEY}", "X-DashScope-Async": "enable"}
    status, reply = http("POST", sim.url + SUBMIT, submit, headers)
    assert status == 400 and "X-DashScope-OssResourceResolve" in reply["message"]
    status, reply = http("POST", sim.url + SUBMIT, {**submit, "model": "happyhorse-1.0-i2v"},
                         {**headers, "X-DashScope-OssResourceResolve": "enable"})
    assert status == 400 and "uploaded for happyhorse-1.1-i2v" in reply["message"]
    assert stats(sim)["submissions"] == {}
    status, reply = http("POST", sim.url + SUBMIT, submit, {**headers, "X-DashScope-OssResourceResolve": "enable"})
    assert status == 200 and stats(sim)["submissions"] == {"dashscope": 1}


def test_adapter_describes_the_form_with_the_file_last():
    adapter = DashScopeAdapter()
    reply = HttpReply(200, {}, {"data": {
        "policy": "cG9s", "signature": "c2ln", "upload_dir": "dashscope-instant/abc/2026-01-01/x/",
        "upload_host": "https://dashscope-file.oss-cn-beijing.aliyuncs.com", "oss_access_key_id": "LTAI",
        "x_oss_object_acl": "private", "x_oss_forbid_overwrite": "true", "expire_in_seconds": 300,
        "max_file_size_mb": 100}})
    form = adapter.upload_form(adapter.parse_upload_policy(reply), "f.png")
    assert form.fields == (("OSSAccessKeyId", "LTAI"), ("Signature", "c2ln"), ("policy", "cG9s"),
                           ("key", "dashscope-instant/abc/2026-01-01/x/f.png"), ("x-oss-object-acl", "private"),
                           ("x-oss-forbid-overwrite", "true"), ("success_action_status", "200"))
    assert (form.file_field, form.media_url, form.max_bytes, form.lifetime_s) == (
        "file", "oss://dashscope-instant/abc/2026-01-01/x/f.png", 100 << 20, 48 * 3600)
    call = adapter.upload_policy_call(GenerationRequest(mode="edit", version="1.0", prompt="x"))
    assert (call.method, call.path, call.params) == ("GET", "/api/v1/uploads",
                                                     {"action": "getPolicy", "model": "happyhorse-1.0-video-edit"})
    with pytest.raises(ProviderError, match="unexpected shape"):
        adapter.parse_upload_policy(HttpReply(200, {}, {"data": {"policy": "x"}}))
    err = adapter.map_upload_error(HttpReply(403, {}, "<Error><Code>AccessDenied</Code><Message>Policy expired."
                                                      "</Message></Error>"))
    assert err.code == "AccessDenied" and "Policy expired." in str(err)


def test_cli_upload_option_reaches_the_store(sim, monkeypatch, tmp_path, capsys):
    from happyhorse.cli import main as cli_main

    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
    path = tmp_path / "first.png"
    path.write_bytes(png_bytes(640, 480))
    args = ["generate", "--provider", "dashscope", "--base-url", sim.base_url("dashscope"), "--mode", "i2v",
            "--image", str(path), "--duration", "3", "--out-dir", str(tmp_path), "--quiet"]
    assert cli_main(args + ["--upload", "s3"]) == 2
    assert "no bucket is configured" in capsys.readouterr().err and stats(sim)["submissions"] == {}
    assert cli_main(args + ["--upload", "provider-store"]) == 0
    assert len(requests(sim, "/dashscope/oss")) == 1
    assert requests(sim, SUBMIT)[0]["body"]["input"]["media"][0]["url"].startswith("oss://")


def test_cli_generate_flags_a_file_a_url_only_host_cannot_take_but_estimate_prices_it(tmp_path, capsys):
    from happyhorse.cli import main as cli_main

    path = tmp_path / "first.png"
    path.write_bytes(png_bytes(640, 480))
    args = ["--provider", "reapi", "--version", "1.0", "--mode", "i2v", "--image", str(path), "--duration", "3"]
    # The price does not depend on the file or how it travels (issue 9): an estimate needs no bucket.
    assert cli_main(["estimate", *args]) == 0
    assert capsys.readouterr().out.startswith("0.49 USD")
    # A run does, and says so before anything is sent (and before a key is even looked up).
    assert cli_main(["generate", *args, "--out", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err
    assert "reAPI only takes public URLs" in err and "HAPPYHORSE_S3_BUCKET" in err
