"""All providers by name, and how to reach one (base URL + key) from the user's settings."""
from __future__ import annotations

from dataclasses import dataclass

from ..engine.capabilities import ProviderCaps
from ..engine.config import Secret, Settings
from .aimlapi import AimlApiAdapter
from .apiframe import ApiframeAdapter
from .apixo import ApixoAdapter
from .base import ProviderAdapter
from .dashscope import DashScopeAdapter
from .getimg import GetimgAdapter
from .reapi import ReApiAdapter
from .simulator import SimulatorAdapter

ADAPTERS: dict[str, ProviderAdapter] = {a.name: a for a in (
    SimulatorAdapter(), DashScopeAdapter(), GetimgAdapter(), ApixoAdapter(), ApiframeAdapter(), AimlApiAdapter(),
    ReApiAdapter())}


def provider_names() -> list[str]:
    return list(ADAPTERS)


def get_adapter(name: str) -> ProviderAdapter:
    try:
        return ADAPTERS[name]
    except KeyError:
        raise KeyError(f"Unknown provider {name!r}; choose one of {', '.join(ADAPTERS)}") from None


def all_caps() -> dict[str, ProviderCaps]:
    return {n: a.caps for n, a in ADAPTERS.items()}


@dataclass(frozen=True)
class Endpoint:
    adapter: ProviderAdapter
    base_url: str
    key: Secret


def resolve_endpoint(name: str, settings: Settings | None = None, base_url: str | None = None) -> Endpoint:
    """Where to send requests and with which key. Raises ConfigError naming the variable when a key is missing."""
    adapter = get_adapter(name)
    settings = settings or Settings.load()
    if adapter.name == "simulator":
        from ..simulator.server import shared_simulator

        url = base_url or shared_simulator().base_url("dashscope")
        return Endpoint(adapter, url.rstrip("/"), Secret("sim-local-key"))
    url = base_url.rstrip("/") if base_url else settings.base_url(adapter.name, adapter.default_base_url)
    return Endpoint(adapter, url, settings.api_key(adapter.name, adapter.caps.key_env))
