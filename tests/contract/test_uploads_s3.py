"""The user's S3-compatible bucket, for real: moto's S3 server on 127.0.0.1, boto3, presigned GET URLs that the
simulated hosts download. Fake credentials only; nothing leaves this machine."""
import calendar
import logging
import time
import urllib.request
from urllib.parse import parse_qs, urlsplit

import pytest

from happyhorse.engine.errors import ConfigError
from happyhorse.engine.ledger import Ledger
from happyhorse.engine.request import GenerationRequest, MediaInput
from happyhorse.engine.runner import JobRunner, RunOptions
from happyhorse.engine.uploads import UploadCache
from happyhorse.providers.registry import all_caps, resolve_endpoint
from tests.conftest import png_bytes
from tests.contract.helpers import sent, stats
from tests.contract.test_uploads_checks import write_video

ACCESS_KEY, SECRET_KEY = "AKIAHAPPYHORSETEST", "fake-secret-never-shown"
BUCKET = "hh-inputs"


@pytest.fixture(scope="module")
def s3_server():
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)       # no per-request access log in the test output
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def bucket_env(monkeypatch, tmp_path, endpoint, session_token=None):
    """Fake credentials from the environment only (no AWS config files), our bucket at `endpoint`."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    if session_token:
        monkeypatch.setenv("AWS_SESSION_TOKEN", session_token)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("HAPPYHORSE_S3_BUCKET", BUCKET)
    monkeypatch.setenv("HAPPYHORSE_S3_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("HAPPYHORSE_S3_REGION", "us-east-1")


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path):
    """A fresh versioned bucket (versions count the PUTs) and the settings pointing at it."""
    import boto3

    bucket_env(monkeypatch, tmp_path, s3_server)
    monkeypatch.setenv("HAPPYHORSE_S3_EXPIRY_S", "900")
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    if any(b["Name"] == BUCKET for b in client.list_buckets()["Buckets"]):
        for v in client.list_object_versions(Bucket=BUCKET).get("Versions", []):
            client.delete_object(Bucket=BUCKET, Key=v["Key"], VersionId=v["VersionId"])
    else:
        client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return client


def only_job(sim):
    (job,) = sim.core.jobs.values()
    return job


def check_presigned(url, s3_server, key_prefix, ext):
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}" == s3_server
    assert parts.path.startswith(f"/{BUCKET}/{key_prefix}") and parts.path.endswith(ext)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and query["X-Amz-Expires"] == ["900"]
    signed_at = calendar.timegm(time.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ"))
    assert abs(signed_at - time.time()) < 120
    assert query["X-Amz-Credential"][0].startswith(ACCESS_KEY + "/")      # the key id, never the secret
    assert SECRET_KEY not in url
    return parts.path[len(f"/{BUCKET}/"):]


async def test_url_only_host_fetches_the_presigned_image(sim, s3, s3_server, monkeypatch, tmp_path):
    monkeypatch.setenv("REAPI_API_KEY", "rk_live_s3test")
    runner = JobRunner(resolve_endpoint("reapi", base_url=sim.base_url("reapi")),
                       ledger=Ledger(tmp_path / "l.sqlite3"), all_caps=all_caps())
    image = png_bytes(800, 600, color=(20, 90, 200))
    before = time.time()
    res = await runner.run(GenerationRequest(mode="i2v", version="1.1", duration_s=3,
                                             first_frame=MediaInput.image_bytes(image)),
                           RunOptions(out_dir=str(tmp_path)))          # auto: reAPI takes URLs only -> bucket
    assert (res.width, res.height) == (960, 720)
    (submit,) = sent(sim, "reapi")
    url = submit["body"]["image_urls"][0]
    key = check_presigned(url, s3_server, "happyhorse/", ".png")
    assert only_job(sim).spec.first_frame == image                    # the host got our exact bytes
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert head["ContentType"] == "image/png" and head["ContentLength"] == len(image)
    with urllib.request.urlopen(url) as resp:
        assert resp.headers["Content-Type"] == "image/png" and resp.read() == image
    cache = UploadCache()
    scope = f"s3|{s3_server}|{BUCKET}|happyhorse/"
    assert cache.get(scope, MediaInput.image_bytes(image).sha256) == url
    expires_at = cache._db.execute("SELECT expires_at FROM uploads").fetchone()[0]
    assert before + 900 <= expires_at <= time.time() + 900


async def test_dashscope_forced_to_the_bucket_sends_the_edit_video(sim, s3, s3_server, monkeypatch, tmp_path):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-s3test")
    monkeypatch.setenv("HAPPYHORSE_S3_PREFIX", "inputs/hh")
    runner = JobRunner(resolve_endpoint("dashscope", base_url=sim.base_url("dashscope")), all_caps=all_caps())
    source = write_video(320, 320, 10, 3.5)
    res = await runner.run(GenerationRequest(mode="edit", version="1.0", prompt="night", source_video=MediaInput(
        kind="video", data=source, mime="video/mp4", name="clip.mp4")), RunOptions(out_dir=str(tmp_path), upload="s3"))
    assert res.path
    (submit,) = sent(sim, "dashscope")
    url = submit["body"]["input"]["media"][0]["url"]
    key = check_presigned(url, s3_server, "inputs/hh/", ".mp4")
    assert "X-DashScope-OssResourceResolve" not in submit["headers"]
    assert s3.head_object(Bucket=BUCKET, Key=key)["ContentType"] == "video/mp4"
    assert only_job(sim).spec.source_video == source
    assert not [r for r in stats(sim)["requests"]["dashscope"] if "uploads" in r["path"]]   # no store used


async def test_same_image_twice_is_put_once(sim, s3, monkeypatch, tmp_path):
    monkeypatch.setenv("REAPI_API_KEY", "rk_live_s3test")
    runner = JobRunner(resolve_endpoint("reapi", base_url=sim.base_url("reapi")), all_caps=all_caps())
    first = MediaInput.image_bytes(png_bytes(640, 480))
    for prompt in ("one", "two"):
        await runner.run(GenerationRequest(mode="i2v", version="1.1", duration_s=3, prompt=prompt, first_frame=first),
                         RunOptions(out_dir=str(tmp_path)))
    urls = [r["body"]["image_urls"][0] for r in sent(sim, "reapi")]
    assert len(urls) == 2 and urls[0] == urls[1]
    versions = s3.list_object_versions(Bucket=BUCKET).get("Versions", [])
    assert len(versions) == 1                                          # one PUT for two jobs
    assert stats(sim)["submissions"] == {"reapi": 2}


async def test_bucket_failure_is_clear_and_nothing_is_submitted(sim, s3, monkeypatch, tmp_path):
    monkeypatch.setenv("REAPI_API_KEY", "rk_live_s3test")
    monkeypatch.setenv("HAPPYHORSE_S3_BUCKET", "no-such-bucket")
    runner = JobRunner(resolve_endpoint("reapi", base_url=sim.base_url("reapi")), all_caps=all_caps())
    with pytest.raises(ConfigError) as err:
        await runner.run(GenerationRequest(mode="i2v", version="1.1", duration_s=3,
                                           first_frame=MediaInput.image_bytes(png_bytes())),
                         RunOptions(out_dir=str(tmp_path)))
    msg = str(err.value)
    assert "s3://no-such-bucket/happyhorse/" in msg and "NoSuchBucket" in msg and "Nothing was submitted" in msg
    assert SECRET_KEY not in msg and ACCESS_KEY not in msg
    assert stats(sim)["submissions"] == {} and "reapi" not in stats(sim)["requests"]


async def test_an_endpoint_echoing_the_request_shows_no_credential(sim, monkeypatch, tmp_path):
    """A storage endpoint (or a proxy before it) that refuses the PUT and echoes the request it got - the
    session token header and the SigV4 signature included - gets none of it into the error the user sees."""
    from xml.sax.saxutils import escape

    from aiohttp import web

    from tests.unit.test_hostile_host import serve

    token = "IQoJb3JpZ2luX2VjEHAPPYHORSESESSIONTOKEN0123456789"
    got: dict[str, str] = {}

    async def echo(request: web.Request) -> web.Response:
        got.update(request.headers)
        # the credentials first, so the 400-character cut of shown text cannot be what hides them
        said = "; ".join(f"{k}: {request.headers[k]}" for k in ("Authorization", "X-Amz-Security-Token"))
        said += f"; secret={SECRET_KEY}; {request.method} {request.path_qs}"
        body = f"<?xml version='1.0'?><Error><Code>AccessDenied</Code><Message>{escape(said)}</Message></Error>"
        return web.Response(status=403, text=body, content_type="application/xml")

    server, endpoint = await serve(echo)
    bucket_env(monkeypatch, tmp_path, endpoint, session_token=token)
    monkeypatch.setenv("REAPI_API_KEY", "rk_live_s3echo")
    runner = JobRunner(resolve_endpoint("reapi", base_url=sim.base_url("reapi")),
                       ledger=Ledger(tmp_path / "l.sqlite3"), all_caps=all_caps())
    try:
        with pytest.raises(ConfigError) as refused:
            await runner.run(GenerationRequest(mode="i2v", version="1.1", duration_s=3, prompt="a horse",
                                               first_frame=MediaInput.image_bytes(png_bytes(400, 300))),
                             RunOptions(out_dir=str(tmp_path), upload="s3"))
    finally:
        await server.cleanup()
    message = str(refused.value)
    signature = got["Authorization"].rpartition("Signature=")[2]
    assert got["X-Amz-Security-Token"] == token and len(signature) == 64      # the echo really carried them
    assert "AccessDenied" in message and "Nothing was submitted" in message
    for secret in (token, signature, SECRET_KEY):
        assert secret not in message, secret
    assert "Signature=***" in message and "X-Amz-Security-Token: ***" in message     # scrubbed, not cut off
    assert not sent(sim, "reapi")
