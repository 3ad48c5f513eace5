"""All providers by name, and how to reach one (base URL + key) from the user's settings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..engine.capabilities import ProviderCaps
from ..engine.config import Secret, Settings
from ..engine.errors import ConfigError, ValidationError, Violation
from .aimlapi import AimlApiAdapter
from .apiframe import ApiframeAdapter
from .apixo import ApixoAdapter
from .base import ProviderAdapter
from .dashscope import DashScopeAdapter
from .dashscope_regions import REGIONS, Region, check_workspace_id, region_named, region_of_url
from .getimg import GetimgAdapter
from .reapi import ReApiAdapter
from .simulator import SimulatorAdapter

if TYPE_CHECKING:
    from ..engine.ledger import Ledger

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
    in_process: bool = False      # the simulator started inside this process: its jobs end with the process

    def __post_init__(self) -> None:
        from ..engine.http import check_keyed_url

        check_keyed_url(self.base_url, self.adapter.name)    # every keyed request is sent to an Endpoint


def check_base_url(url: str) -> None:
    """An explicit base URL is an http(s) URL with a host; anything else is refused before it is used."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError([Violation("base_url", f"{url!r} is not a URL; give the provider's API base URL, "
                                                     f"like https://dashscope-intl.aliyuncs.com (or a simulator URL "
                                                     f"printed by `happyhorse simulate`)")])


# One DashScope adapter per region (its prices, store and messages), made once; None: not an Alibaba endpoint.
_DASHSCOPE: dict[str | None, DashScopeAdapter] = {None: DashScopeAdapter(None),
                                                 **{n: DashScopeAdapter(r) for n, r in REGIONS.items()}}


def configured(name: str, settings: Settings | None = None, base_url: str | None = None
               ) -> tuple[ProviderAdapter, str | None]:
    """The adapter as the user's settings configure it, and the base URL they give (None: the adapter's default).

    For DashScope that is the region's adapter: the region set as `region` (HAPPYHORSE_DASHSCOPE_REGION or
    [dashscope] region), else the one the configured base URL belongs to, else Singapore; its URL is the
    workspace domain when a workspace id is set, else the region's classic domain. An explicit base URL wins
    (it must then agree with an explicit region).
    """
    adapter = get_adapter(name)
    if adapter.name != "dashscope":
        return adapter, base_url
    settings = settings or Settings.load()
    url = base_url.rstrip("/") if base_url else (settings.base_url(name, "") if settings.has_base_url(name) else None)
    region_name, where = settings.provider_option(name, "region")
    region: Region | None = region_named(region_name, where) if region_name else None
    if url is not None:
        from ..engine.http import is_loopback

        of_url = region_of_url(url)
        if region is not None and of_url is not None and of_url is not region:
            raise ConfigError(f"The DashScope base URL {url} is in {of_url.title}, but the region is set to "
                              f"{region.title} ({where}); keys are region-locked, so make them agree")
        if region is None:
            region = of_url if of_url is not None or not is_loopback(url) else REGIONS["singapore"]
        return _DASHSCOPE[region.name if region is not None else None], url
    region = region or REGIONS["singapore"]
    workspace, ws_where = settings.provider_option(name, "workspace_id")
    return _DASHSCOPE[region.name], region.base_url(check_workspace_id(workspace, ws_where) if workspace else None)


def resolve_endpoint(name: str, settings: Settings | None = None, base_url: str | None = None) -> Endpoint:
    """Where to send requests and with which key. Raises ConfigError naming the variable when a key is missing."""
    adapter = get_adapter(name)
    if base_url is not None:
        check_base_url(base_url)
    settings = settings or Settings.load()
    if adapter.name == "simulator":
        from ..simulator.server import shared_simulator

        url = base_url or shared_simulator().base_url("dashscope")
        return Endpoint(adapter, url.rstrip("/"), Secret("sim-local-key"), in_process=base_url is None)
    adapter, url = configured(name, settings, base_url)
    url = url or settings.base_url(adapter.name, adapter.default_base_url)
    return Endpoint(adapter, url, settings.api_key(adapter.name, adapter.caps.key_env))


def setup_status(settings: Settings | None = None) -> dict:
    """What is set up, for the ComfyUI panel: per provider a key yes/no (never the key or any part of it, never
    where it came from), whether an upload bucket is configured, the DashScope region. Reads nothing else."""
    from ..engine.errors import ConfigError
    from ..engine.uploads.s3 import ENV as S3_ENV, S3Settings
    settings = settings or Settings.load()
    providers = []
    for name, adapter in ADAPTERS.items():
        needs_key = bool(adapter.caps.key_env)
        try:
            has_key = not needs_key or bool(settings.api_key(name, adapter.caps.key_env))
        except ConfigError:
            has_key = False
        providers.append({"name": name, "display_name": adapter.caps.display_name, "needs_key": needs_key,
                          "has_key": has_key, "key_env": adapter.caps.key_env})
    try:
        bucket = S3Settings.load(settings) is not None
        bucket_problem = ""
    except ConfigError:
        bucket, bucket_problem = False, f"the upload bucket settings ({S3_ENV['bucket']}) are not valid"
    try:
        dashscope, _ = configured("dashscope", settings)
        region = dashscope.region.name if dashscope.region is not None else "custom endpoint"
    except ConfigError:
        region = "invalid DashScope settings (region, workspace id or base URL)"
    hints = []
    if not any(p["has_key"] for p in providers if p["needs_key"]):
        hints.append("No provider key yet: the simulator runs free; for a real host set its key variable "
                     "(e.g. DASHSCOPE_API_KEY) or [keys] in the HappyHorse config file, then restart ComfyUI.")
    if bucket_problem:
        hints.append(f"Fix {bucket_problem}.")
    elif not bucket:
        needing = [a.caps.display_name for a in ADAPTERS.values()
                   if not a.caps.accepts_data_uri and not a.caps.has_temp_store]
        if needing:
            hints.append(f"No upload bucket: {', '.join(needing)} take local images and videos only through one "
                         f"({S3_ENV['bucket']}).")
    return {"providers": providers, "upload_bucket": bucket, "dashscope_region": region, "hints": hints}


def resolve_for_task(ledger: Ledger, task_id: str, provider: str | None = None, base_url: str | None = None,
                     settings: Settings | None = None) -> Endpoint:
    """Where to collect a recorded task: the provider and base URL it was submitted to, unless told otherwise
    (another base URL is another account or region, where the task id means nothing). The built-in
    simulator is the exception: its in-process server ends with the process that ran the job."""
    rec = ledger.find_task(task_id, provider)
    if provider is None:
        if rec is None:
            raise ValidationError([Violation("provider", f"task {task_id} is not in the job ledger ({ledger.path}); "
                                                         f"name the provider it was submitted to")])
        provider = rec.provider
    if base_url is None and rec is not None and rec.provider == provider and provider != "simulator":
        base_url = rec.base_url
    return resolve_endpoint(provider, settings, base_url)
