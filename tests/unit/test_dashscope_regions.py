"""DashScope regions from the user's settings: endpoint, workspace domain, prices, store, clear refusals."""
import pytest

from happyhorse.engine.errors import ConfigError
from happyhorse.engine.pricing import estimate
from happyhorse.engine.request import GenerationRequest
from happyhorse.providers.registry import configured, resolve_endpoint

T2V = GenerationRequest(mode="t2v", version="1.0", prompt="a", duration_s=5)


@pytest.mark.parametrize("region, workspace, url", [
    (None, None, "https://dashscope-intl.aliyuncs.com"),
    ("singapore", "ws-123", "https://ws-123.ap-southeast-1.maas.aliyuncs.com"),
    ("beijing", None, "https://dashscope.aliyuncs.com"),
    ("Beijing", "ws-9", "https://ws-9.cn-beijing.maas.aliyuncs.com"),
    ("virginia", None, "https://dashscope-us.aliyuncs.com"),
    ("virginia", "ws-9", "https://dashscope-us.aliyuncs.com"),        # no workspace domain published there
    ("frankfurt", "ws-eu", "https://ws-eu.eu-central-1.maas.aliyuncs.com"),
])
def test_region_and_workspace_pick_the_endpoint(monkeypatch, region, workspace, url):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-x")
    if region:
        monkeypatch.setenv("HAPPYHORSE_DASHSCOPE_REGION", region)
    if workspace:
        monkeypatch.setenv("HAPPYHORSE_DASHSCOPE_WORKSPACE_ID", workspace)
    ep = resolve_endpoint("dashscope")
    assert ep.base_url == url
    assert ep.adapter.region.name == (region or "singapore").lower()


def test_region_from_the_config_file(monkeypatch, tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[dashscope]\nregion = "frankfurt"\nworkspace_id = "ws-file"\n')
    monkeypatch.setenv("HAPPYHORSE_CONFIG", str(cfg))
    adapter, url = configured("dashscope")
    assert url == "https://ws-file.eu-central-1.maas.aliyuncs.com" and adapter.region.title == "Frankfurt"


def test_frankfurt_without_workspace_and_unknown_region_are_clear_errors(monkeypatch):
    monkeypatch.setenv("HAPPYHORSE_DASHSCOPE_REGION", "frankfurt")
    with pytest.raises(ConfigError, match="only reachable through a workspace domain: set "
                                          "HAPPYHORSE_DASHSCOPE_WORKSPACE_ID"):
        configured("dashscope")
    monkeypatch.setenv("HAPPYHORSE_DASHSCOPE_REGION", "tokyo")
    with pytest.raises(ConfigError, match="'tokyo' \\(HAPPYHORSE_DASHSCOPE_REGION\\) is not one of singapore, "
                                          "beijing, virginia, frankfurt"):
        configured("dashscope")


def test_base_url_wins_and_must_agree_with_the_region(monkeypatch):
    adapter, url = configured("dashscope", base_url="https://dashscope.aliyuncs.com")
    assert url == "https://dashscope.aliyuncs.com" and adapter.region.name == "beijing"
    monkeypatch.setenv("HAPPYHORSE_DASHSCOPE_REGION", "singapore")
    with pytest.raises(ConfigError, match="is in Beijing, but the region is set to Singapore"):
        configured("dashscope", base_url="https://dashscope.aliyuncs.com")
    monkeypatch.delenv("HAPPYHORSE_DASHSCOPE_REGION")
    proxy, _ = configured("dashscope", base_url="https://llm-proxy.example.com")
    assert proxy.region is None and not proxy.caps.has_temp_store


def test_prices_are_per_region_and_unknown_ones_say_so(monkeypatch):
    sg = estimate(T2V, "dashscope", configured("dashscope")[0].prices)
    assert sg.usd == pytest.approx(0.7)
    for region in ("beijing", "virginia"):
        monkeypatch.setenv("HAPPYHORSE_DASHSCOPE_REGION", region)
        e = estimate(T2V, "dashscope", configured("dashscope")[0].prices)
        assert e.usd is None and e.summary() == "price unknown"
        assert any("not in our price table" in line for line in e.lines), e.lines


def test_temporary_store_only_in_singapore_and_beijing(monkeypatch):
    monkeypatch.setenv("HAPPYHORSE_DASHSCOPE_WORKSPACE_ID", "ws-1")
    stores = {}
    for region in ("singapore", "beijing", "virginia", "frankfurt"):
        monkeypatch.setenv("HAPPYHORSE_DASHSCOPE_REGION", region)
        stores[region] = configured("dashscope")[0].caps.has_temp_store
    assert stores == {"singapore": True, "beijing": True, "virginia": False, "frankfurt": False}
