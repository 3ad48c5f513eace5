"""DashScope regions against the simulated DashScope: store only where it exists, prices per region, and a
rejected key explained as region-locked."""
import pytest

from happyhorse.engine import uploads
from happyhorse.engine.errors import ConfigError, ProviderError
from happyhorse.engine.ledger import Ledger
from happyhorse.engine.request import GenerationRequest, MediaInput
from happyhorse.engine.runner import JobRunner, RunOptions
from happyhorse.engine.uploads import choice
from happyhorse.providers.registry import all_caps, resolve_endpoint
from tests.conftest import png_bytes
from tests.contract.helpers import sent, stats


def _runner(sim, tmp_path):
    return JobRunner(resolve_endpoint("dashscope", base_url=sim.base_url("dashscope")),
                     ledger=Ledger(tmp_path / "l.sqlite3"), all_caps=all_caps())


def _i2v():
    return GenerationRequest(mode="i2v", version="1.0", prompt="a", duration_s=3,
                             first_frame=MediaInput.image_bytes(png_bytes(800, 600)))


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-region-test")


@pytest.mark.parametrize("region, store", [("beijing", True), ("frankfurt", False), ("virginia", False)])
async def test_the_temporary_store_is_used_only_where_it_exists(sim, tmp_path, monkeypatch, key, region, store):
    monkeypatch.setenv("HAPPYHORSE_DASHSCOPE_REGION", region)
    monkeypatch.setattr(choice, "INLINE_MAX_BYTES", 100)          # too big to inline by preference
    res = await _runner(sim, tmp_path).run(_i2v(), RunOptions(out_dir=str(tmp_path)))
    url = sent(sim, "dashscope")[-1]["body"]["input"]["media"][0]["url"]
    assert url.startswith("oss://") == store and (store or url.startswith("data:image/png;base64,"))
    assert res.cost_usd is None          # only Singapore's price is known: not shown for another region
    if not store:
        assert not any(r["path"].endswith("/api/v1/uploads") for r in sent(sim, "dashscope", "GET"))
        with pytest.raises(ConfigError, match="has no upload store of its own"):
            await _runner(sim, tmp_path).run(_i2v().with_(prompt="b"),
                                             RunOptions(out_dir=str(tmp_path), upload=uploads.PROVIDER_STORE))
    assert stats(sim)["submissions"] == {"dashscope": 1}


async def test_rejected_key_is_explained_as_region_locked(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-invalid-for-this-region")
    monkeypatch.setenv("HAPPYHORSE_DASHSCOPE_REGION", "beijing")
    with pytest.raises(ProviderError) as err:
        await _runner(sim, tmp_path).run(GenerationRequest(mode="t2v", prompt="a", duration_s=3),
                                         RunOptions(out_dir=str(tmp_path)))
    text = str(err.value)
    assert err.value.kind == "auth" and "rejected by the Beijing endpoint" in text
    assert "DashScope keys are region-locked" in text and "HAPPYHORSE_DASHSCOPE_REGION" in text
    assert "sk-invalid-for-this-region" not in text
