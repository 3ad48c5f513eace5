"""DashScope's regions: where a key works, which endpoint serves it, what it costs, whether it has a file store.

Keys, models and endpoints are region-locked: "make sure that the model, endpoint URL, and API key all belong to
the same region; cross-region calls will fail" [E: Model Studio "HappyHorse video editing API reference", 2026].
Endpoints [E: same page, and providers.md section 1]:
  Singapore  https://dashscope-intl.aliyuncs.com         or https://{WorkspaceId}.ap-southeast-1.maas.aliyuncs.com
  Beijing    https://dashscope.aliyuncs.com              or https://{WorkspaceId}.cn-beijing.maas.aliyuncs.com
  Virginia   https://dashscope-us.aliyuncs.com           (no workspace domain published)
  Frankfurt  https://{WorkspaceId}.eu-central-1.maas.aliyuncs.com only (so it needs the workspace id)
The workspace domains are the recommended ones ("We recommend migrating to the new domains ... The existing
domain remains fully functional" [E: the same page, Sept/Oct 2026]). With a workspace id configured, the
workspace domain is used wherever the region has one.
The temporary upload store (oss://) exists in Singapore and Beijing only, "for development and testing only"
[E: Model Studio "upload a local file to get a temporary URL"]: other regions never use it.
Prices: only Singapore's list price is in our table [E: Model Studio pricing, Singapore]. Beijing bills in CNY
and Virginia / Frankfurt rates are not in the documents we have: estimates there say the price is unknown
instead of showing Singapore's USD.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..engine.errors import ConfigError
from ..engine.pricing import PriceTable

REGION_ENV = "HAPPYHORSE_DASHSCOPE_REGION"
WORKSPACE_ENV = "HAPPYHORSE_DASHSCOPE_WORKSPACE_ID"

SINGAPORE_PRICES = PriceTable(
    usd_per_second={("1.0", "720p"): 0.14, ("1.0", "1080p"): 0.24,
                    ("1.1", "720p"): 0.14, ("1.1", "1080p"): 0.18},
    edit_billing="input_plus_output",
    source="DashScope Singapore list price",
)


def unknown_prices(title: str) -> PriceTable:
    return PriceTable(usd_per_second={(v, r): None for v in ("1.0", "1.1") for r in ("720p", "1080p")},
                      edit_billing="input_plus_output",
                      source=f"DashScope {title}: its rates are not in our price table (Singapore's are), so the "
                             f"price is shown as unknown rather than guessed; see the Model Studio console")


@dataclass(frozen=True)
class Region:
    name: str                       # what the user types: singapore | beijing | virginia | frankfurt
    title: str
    code: str                       # Alibaba's region id
    legacy_url: str | None          # the classic dashscope domain, where there is one
    has_workspace_domain: bool
    temp_store: bool                # DashScope's temporary oss:// upload store
    prices: PriceTable

    def workspace_url(self, workspace_id: str) -> str:
        return f"https://{workspace_id}.{self.code}.maas.aliyuncs.com"

    def base_url(self, workspace_id: str | None) -> str:
        if workspace_id and self.has_workspace_domain:
            return self.workspace_url(workspace_id)
        if self.legacy_url:
            return self.legacy_url
        raise ConfigError(f"DashScope's {self.title} region is only reachable through a workspace domain: set "
                          f"{WORKSPACE_ENV} (or workspace_id = \"...\" under [dashscope] in the config file) to the "
                          f"id shown on the Workspace Details page of the Model Studio console")


REGIONS: dict[str, Region] = {r.name: r for r in (
    Region("singapore", "Singapore", "ap-southeast-1", "https://dashscope-intl.aliyuncs.com", True, True,
           SINGAPORE_PRICES),
    Region("beijing", "Beijing", "cn-beijing", "https://dashscope.aliyuncs.com", True, True,
           unknown_prices("Beijing (billed in CNY)")),
    Region("virginia", "Virginia", "us-east-1", "https://dashscope-us.aliyuncs.com", False, False,
           unknown_prices("Virginia")),
    Region("frankfurt", "Frankfurt", "eu-central-1", None, True, False, unknown_prices("Frankfurt")),
)}
DEFAULT_REGION = REGIONS["singapore"]
_WORKSPACE_ID = re.compile(r"^[A-Za-z0-9-]{1,63}$")


def region_named(name: str, where: str) -> Region:
    region = REGIONS.get(name.strip().lower())
    if region is None:
        raise ConfigError(f"DashScope region {name!r} ({where}) is not one of {', '.join(REGIONS)}")
    return region


def check_workspace_id(value: str, where: str) -> str:
    if not _WORKSPACE_ID.match(value):
        raise ConfigError(f"DashScope workspace id {value!r} ({where}) should be the id from the Workspace "
                          f"Details page (letters, digits and dashes)")
    return value


def region_of_url(url: str) -> Region | None:
    """The region a DashScope endpoint belongs to, None when the host is not one of Alibaba's."""
    host = (urlsplit(url).hostname or "").lower()
    for region in REGIONS.values():
        if region.legacy_url and host == urlsplit(region.legacy_url).hostname:
            return region
        if host.endswith(f".{region.code}.maas.aliyuncs.com"):
            return region
    return None
