"""The built-in simulator as a selectable provider: free, offline, no key. Speaks DashScope's protocol."""
from __future__ import annotations

import dataclasses

from ..engine.pricing import PriceTable
from ..engine.request import GenerationRequest
from .base import ProviderAdapter
from .dashscope import CAPS, DashScopeAdapter

SIM_CAPS = dataclasses.replace(CAPS, name="simulator", display_name="Simulator (free, local)", key_env="",
                               has_temp_store=True,
                               notes="runs on 127.0.0.1, makes real MP4s, charges nothing")
SIM_PRICES = PriceTable(usd_per_second={(v, r): 0.0 for v in ("1.0", "1.1") for r in ("720p", "1080p")},
                        source="simulator: nothing is charged")


class SimulatorAdapter(DashScopeAdapter):
    name = "simulator"
    caps = SIM_CAPS
    prices = SIM_PRICES
    default_base_url = ""          # started on demand; see registry.resolve_endpoint
    poll_min_s = 0.2
    poll_max_s = 1.0

    def __init__(self) -> None:
        self.region = None          # not a DashScope region: its own caps and (free) prices above

    def auth_message(self) -> str:
        return ProviderAdapter.auth_message(self)

    def expected_seconds(self, req: GenerationRequest) -> float:
        from ..simulator.server import shared_simulator

        t = shared_simulator().core.timing
        return t.queue_s + t.process_s
