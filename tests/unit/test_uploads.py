"""Upload planning (which way each file goes), bucket settings, the upload cache and the validation pre-flight."""
import os
import sqlite3
import stat

import pytest

from happyhorse.engine.config import Settings
from happyhorse.engine.errors import ConfigError
from happyhorse.engine.request import GenerationRequest, MediaInput
from happyhorse.engine.runner import check_request
from happyhorse.engine.uploads import S3Settings, UploadCache, check_uploadable, plan_uploads
from happyhorse.engine.uploads import choice
from happyhorse.engine.uploads.cache import REUSE_FLOOR_S
from happyhorse.providers.registry import all_caps, get_adapter
from tests.conftest import png_bytes
from tests.contract.test_uploads_checks import block_boto3

DS = get_adapter("dashscope").caps
REAPI = get_adapter("reapi").caps


def i2v(first: MediaInput) -> GenerationRequest:
    return GenerationRequest(mode="i2v", version="1.1", duration_s=3, first_frame=first)


def image(w=640, h=480) -> MediaInput:
    return MediaInput.image_bytes(png_bytes(w, h))


@pytest.fixture
def bucket_env(monkeypatch):
    monkeypatch.setenv("HAPPYHORSE_S3_BUCKET", "my-bucket")


def test_auto_prefers_data_uri_then_provider_store(monkeypatch):
    assert plan_uploads(i2v(image()), DS)[0] == ["data-uri"]
    monkeypatch.setattr(choice, "INLINE_MAX_BYTES", 100)          # a "large" file
    assert plan_uploads(i2v(image()), DS)[0] == ["provider-store"]


def test_a_configured_bucket_wins_over_the_provider_store(bucket_env, monkeypatch):
    # DashScope's temporary store is "for development and testing only": the user's own bucket comes first.
    monkeypatch.setattr(choice, "INLINE_MAX_BYTES", 100)
    plan, bucket = plan_uploads(i2v(image()), DS)
    assert plan == ["s3"] and bucket.bucket == "my-bucket"


def test_auto_uses_bucket_for_url_only_hosts(bucket_env):
    plan, bucket = plan_uploads(i2v(image()), REAPI)
    assert plan == ["s3"] and bucket.bucket == "my-bucket"


def test_auto_large_file_goes_to_bucket_when_host_has_no_store(bucket_env, monkeypatch):
    aiml = get_adapter("aimlapi").caps
    monkeypatch.setattr(choice, "INLINE_MAX_BYTES", 100)
    assert plan_uploads(i2v(image()), aiml)[0] == ["s3"]
    monkeypatch.delenv("HAPPYHORSE_S3_BUCKET")
    assert plan_uploads(i2v(image()), aiml)[0] == ["data-uri"]    # nothing else: inline anyway


def test_urls_pass_through_and_need_no_settings(monkeypatch):
    monkeypatch.setenv("HAPPYHORSE_S3_EXPIRY_S", "not a number")  # would fail if settings were read
    req = i2v(MediaInput.from_url("https://example.com/a.png", "image"))
    assert plan_uploads(req, REAPI) == ([None], None)
    assert plan_uploads(GenerationRequest(mode="t2v", prompt="a"), REAPI) == ([], None)


def test_url_only_host_without_bucket_names_what_to_configure():
    with pytest.raises(ConfigError) as err:
        check_uploadable(i2v(image()), REAPI)
    msg = str(err.value)
    for text in ("reAPI only takes public URLs", "first_frame", "HAPPYHORSE_S3_BUCKET", "HAPPYHORSE_S3_ENDPOINT_URL",
                 "[upload.s3]", "AWS_ACCESS_KEY_ID", "AWS_PROFILE", "docs/uploads.md"):
        assert text in msg, text


def test_price_only_check_flags_missing_bucket():
    with pytest.raises(ConfigError, match="HAPPYHORSE_S3_BUCKET"):
        check_request(i2v(image()), get_adapter("reapi"), all_caps())


@pytest.mark.parametrize("upload, caps, expect", [
    ("data-uri", REAPI, "reAPI rejects data: URIs"),
    ("provider-store", REAPI, "reAPI has no upload store of its own"),
    ("s3", DS, "no bucket is configured"),
    ("ftp", DS, "not a choice; use one of auto, data-uri, provider-store, s3"),
])
def test_forced_choice_that_cannot_work_is_refused(upload, caps, expect):
    with pytest.raises(ConfigError, match=expect):
        plan_uploads(i2v(image()), caps, upload)


def test_forced_choices_that_work(bucket_env):
    assert plan_uploads(i2v(image()), DS, "s3")[0] == ["s3"]
    assert plan_uploads(i2v(image()), DS, "provider-store")[0] == ["provider-store"]
    assert plan_uploads(i2v(image()), get_adapter("aimlapi").caps, "data-uri")[0] == ["data-uri"]


def test_bucket_without_boto3_says_pip_install(bucket_env, monkeypatch):
    block_boto3(monkeypatch)
    with pytest.raises(ConfigError) as err:
        check_uploadable(i2v(image()), REAPI)
    assert "pip install boto3" in str(err.value) and "HAPPYHORSE_S3_BUCKET" in str(err.value)


def test_s3_settings_env_wins_over_config_file(tmp_path, monkeypatch):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[upload.s3]\nbucket = "from-file"\nprefix = "inputs"\nendpoint_url = "https://minio.example/"\n'
                   'region = "eu-1"\nexpiry_s = 1200\naddressing_style = "path"\nprofile = "r2"\n')
    monkeypatch.setenv("HAPPYHORSE_CONFIG", str(cfg))
    s = S3Settings.load(Settings.load())
    assert s == S3Settings(bucket="from-file", prefix="inputs/", endpoint_url="https://minio.example", region="eu-1",
                           expiry_s=1200, addressing_style="path", profile="r2")
    monkeypatch.setenv("HAPPYHORSE_S3_BUCKET", "from-env")
    monkeypatch.setenv("HAPPYHORSE_S3_EXPIRY_S", "600")
    s = S3Settings.load(Settings.load())
    assert (s.bucket, s.expiry_s, s.prefix) == ("from-env", 600, "inputs/")


def test_s3_settings_defaults_and_absence(monkeypatch):
    assert S3Settings.load(Settings.load()) is None
    monkeypatch.setenv("HAPPYHORSE_S3_BUCKET", "b")
    s = S3Settings.load(Settings.load())
    assert (s.prefix, s.expiry_s, s.endpoint_url, s.addressing_style) == ("happyhorse/", 3600, None, "auto")


@pytest.mark.parametrize("var, value, expect", [
    ("HAPPYHORSE_S3_EXPIRY_S", "10", "300-604800"),
    ("HAPPYHORSE_S3_EXPIRY_S", "999999999", "300-604800"),
    ("HAPPYHORSE_S3_ENDPOINT_URL", "minio:9000", "must start with https://"),
    ("HAPPYHORSE_S3_ADDRESSING_STYLE", "sideways", "auto, path, virtual"),
])
def test_s3_settings_refuse_bad_values(monkeypatch, var, value, expect):
    monkeypatch.setenv("HAPPYHORSE_S3_BUCKET", "b")
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=expect):
        S3Settings.load(Settings.load())


def test_cache_reuses_while_half_the_life_is_left(tmp_path):
    cache = UploadCache(tmp_path / "u.sqlite3")
    cache.put("s3|x", "abc", "https://u/1", expires_at=1000 + 7200, now=1000)
    assert cache.get("s3|x", "abc", now=1000 + 3600) == "https://u/1"
    assert cache.get("s3|x", "abc", now=1000 + 3601) is None
    assert cache.get("s3|other", "abc", now=1000) is None
    cache.put("s3|x", "short", "https://u/2", expires_at=2000 + 900, now=2000)
    assert cache.get("s3|x", "short", now=2000 + 900 - REUSE_FLOOR_S) == "https://u/2"
    assert cache.get("s3|x", "short", now=2000 + 901 - REUSE_FLOOR_S) is None


def test_cache_persists_privately_and_prunes(tmp_path):
    path = tmp_path / "u.sqlite3"
    cache = UploadCache(path)
    cache.put("scope", "old", "https://u/old", expires_at=100 + 7200, now=100)
    cache.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = UploadCache(path)
    assert again.get("scope", "old", now=100) == "https://u/old"
    again.put("scope", "new", "https://u/new", expires_at=20000, now=10000)   # prunes the expired row
    again.close()
    rows = sqlite3.connect(path).execute("SELECT sha256 FROM uploads").fetchall()
    assert rows == [("new",)]


def test_default_cache_lives_next_to_the_ledger(tmp_path):
    cache = UploadCache()
    assert cache.path == str(tmp_path / "hh-home" / "uploads.sqlite3")
    cache.close()
