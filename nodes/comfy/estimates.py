"""Prices for the CostEstimate node and the price pill on every node. Host-neutral; same tables as the runner."""
from __future__ import annotations

import dataclasses
from typing import Any

from ..engine.errors import HappyHorseError
from ..engine.pricing import Estimate, estimate
from ..engine.request import GenerationRequest, MediaInput
from ..engine.routing import AUTO as AUTO_PROVIDER
from ..engine.routing import plan_route
from ..providers.registry import configured
from .params import read_choice
from .specs import ID_PREFIX, node_specs


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Dotted widget names (as the frontend and the API prompt spell them) -> execute()'s nested dicts.

    A dynamic combo's own value sits under its own name inside its group, as ComfyUI nests it:
    {"provider": "x", "provider.version": "1.1"} -> {"provider": {"provider": "x", "version": {"version": "1.1"}}}.
    """
    groups = {k.rsplit(".", 1)[0] for k in flat if "." in k}
    out: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        if key in groups:
            parts.append(parts[-1])
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def price(mode: str, provider: Any, source_seconds: float | None = None) -> Estimate:
    choice = read_choice(provider, mode)
    req = GenerationRequest(mode=mode, prompt="(price only)", version=choice.version, resolution=choice.resolution,
                            aspect_ratio=choice.aspect_ratio, duration_s=choice.duration_s,
                            source_video_duration_s=source_seconds if mode == "edit" else None)
    if choice.provider == AUTO_PROVIDER:
        return auto_price(req)
    adapter = configured(choice.provider)[0]        # a DashScope region prices in its own rates
    return estimate(req, adapter.name, adapter.prices)


def auto_price(req: GenerationRequest) -> Estimate:
    """Provider auto: the chosen host's price, with the whole ranking (prices or why a host is left out)."""
    if req.mode == "edit" and req.source_video is None:
        # Only the length matters for the price; a placeholder stands in for the file in the hosts' checks.
        req = req.with_(source_video=MediaInput.from_url("https://placeholder.invalid/source.mp4", "video"))
    plan = plan_route(req, seed_is_optional=True).require()
    est = plan.chosen.estimate
    return dataclasses.replace(est, lines=(plan.why(), *plan.table(), *est.lines))


def price_from_mode_combo(mode_value: Any, source_seconds: float | None = None) -> Estimate:
    """The CostEstimate node's `mode` DynamicCombo: {"mode": "t2v", "provider": {...}, "source_seconds": 5}."""
    if not isinstance(mode_value, dict) or mode_value.get("mode") not in ("t2v", "i2v", "r2v", "edit"):
        raise HappyHorseError("Pick what to price (t2v, i2v, r2v or edit) in the mode widget.")
    mode = mode_value["mode"]
    seconds = source_seconds if source_seconds is not None else mode_value.get("source_seconds")
    return price(mode, mode_value.get("provider"), float(seconds) if seconds is not None else None)


def usd_or_unknown(est: Estimate) -> float:
    return round(est.usd, 4) if est.usd is not None else -1.0


def breakdown(est: Estimate) -> str:
    head = "Free (simulator)" if est.usd == 0 else f"Estimated: {est.summary()}"
    return "\n".join([head, *est.lines])


def price_for_widgets(node_type: str, widgets: dict[str, Any]) -> dict[str, Any]:
    """For the price pill: the node's current widget values -> a short label and the breakdown."""
    nested = nest(widgets)
    if node_type == ID_PREFIX + "CostEstimate":
        est = price_from_mode_combo(nested.get("mode"))
    else:
        modes = {s.node_id: s.mode for s in node_specs() if s.mode}
        if node_type not in modes:
            raise HappyHorseError(f"{node_type} has no price")
        est = price(modes[node_type], nested.get("provider"))
    auto = _is_auto(nested)
    return {"label": pill_label(est, auto), "usd": est.usd, "breakdown": list(est.lines)}


def _is_auto(nested: dict[str, Any]) -> bool:
    combo = nested["mode"] if isinstance(nested.get("mode"), dict) else nested     # Cost Estimate nests one deeper
    provider = combo.get("provider")
    return isinstance(provider, dict) and provider.get("provider") == AUTO_PROVIDER


def pill_label(est: Estimate, auto: bool = False) -> str:
    # A zero rate is free whatever the length (the simulator's edit, before its source length is known).
    if est.usd == 0 or est.usd_per_second == 0:
        return "free"
    if auto:
        return f"{pill_label(est)} at {est.provider}"
    if est.usd is not None:
        return f"~{est.usd:.2f} USD"
    if est.mode == "edit" and est.usd_per_second is not None:
        return f"{est.usd_per_second:g} USD/s x (input + output)"
    return est.summary()
