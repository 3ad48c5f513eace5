"""Prices from one table per provider. Used by `happyhorse estimate`, the runner and the CostEstimate node."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .request import GenerationRequest

EDIT_USED_SECONDS = 15.0


@dataclass(frozen=True)
class PriceTable:
    """USD per output second by (version, resolution); None where the host publishes no rate.

    edit_billing: how an edit is billed, in seconds of the rate:
      "input_plus_output" - the used input seconds plus the output seconds (DashScope, APIXO: 2 x min(in, 15)).
      "output_input_uncertain" - the output seconds are documented; whether the input seconds are billed too is
        not, so the estimate counts the output and its breakdown names the possible extra (reAPI).
    credits_per_second: for hosts that bill in credits, by (version, resolution).
    usd_per_credit: the published conversion, None if unknown (then USD is not invented).
    """

    usd_per_second: dict[tuple[str, str], float | None]
    edit_billing: str = "input_plus_output"
    credits_per_second: dict[tuple[str, str], float] = field(default_factory=dict)
    usd_per_credit: float | None = None
    credits_rule: str = ""              # "ceil_usd_x1000" for reAPI
    source: str = ""                    # where the numbers come from, shown in the breakdown


@dataclass(frozen=True)
class Estimate:
    provider: str
    version: str
    mode: str
    resolution: str
    billed_seconds: float | None
    usd_per_second: float | None
    usd: float | None
    credits: float | None = None
    note: str = ""
    lines: tuple[str, ...] = ()

    def summary(self) -> str:
        if self.usd is not None:
            head = f"{self.usd:.2f} USD"
        elif self.credits is not None:
            head = f"{self.credits:g} credits (USD rate not published)"
        else:
            head = "price unknown"
        return head

    def as_dict(self) -> dict:
        return {"provider": self.provider, "version": self.version, "mode": self.mode,
                "resolution": self.resolution, "billed_seconds": self.billed_seconds,
                "usd_per_second": self.usd_per_second, "usd": None if self.usd is None else round(self.usd, 4),
                "credits": self.credits, "note": self.note, "breakdown": list(self.lines)}


def billed_seconds(req: GenerationRequest, table: PriceTable) -> float | None:
    if req.mode != "edit":
        return float(req.effective_duration_s or 0)
    if req.source_video_duration_s is None:
        return None
    used = min(req.source_video_duration_s, EDIT_USED_SECONDS)
    if table.edit_billing == "input_plus_output":
        return 2 * used
    return used


def estimate(req: GenerationRequest, provider: str, table: PriceTable) -> Estimate:
    key = (req.version, req.resolution)
    rate = table.usd_per_second.get(key)
    seconds = billed_seconds(req, table)
    lines: list[str] = [f"{provider} HappyHorse {req.version} {req.mode} {req.resolution}"]
    if req.mode == "edit":
        if seconds is None:
            lines.append("edit is billed on the source video's length, which is not known yet")
        elif table.edit_billing == "input_plus_output":
            used = min(req.source_video_duration_s or 0, EDIT_USED_SECONDS)
            lines.append(f"edit: {used:g} s of input used + {used:g} s output = {seconds:g} s billed")
        else:
            lines.append(f"edit: {seconds:g} s output billed")
    else:
        lines.append(f"{seconds:g} s of video")

    credits = None
    cps = table.credits_per_second.get(key)
    if cps is not None and seconds is not None:
        credits = cps * seconds
        lines.append(f"{cps:g} credits/s x {seconds:g} s = {credits:g} credits")

    usd = None
    note = ""
    if rate is None and cps is not None and table.usd_per_credit is not None and credits is not None:
        usd = credits * table.usd_per_credit
        rate = cps * table.usd_per_credit
        lines.append(f"at {table.usd_per_credit:g} USD/credit = {usd:.2f} USD")
    elif rate is not None and seconds is not None:
        usd = rate * seconds
        lines.append(f"{rate:g} USD/s x {seconds:g} s = {usd:.2f} USD")
        if table.credits_rule == "ceil_usd_x1000":
            credits = float(math.ceil(round(rate * seconds * 1000, 6)))
            lines.append(f"charged as {credits:g} credits (ceil(USD x 1000))")
    if req.mode == "edit" and seconds is not None and table.edit_billing == "output_input_uncertain":
        extra = f" (+{rate * seconds:.2f} USD)" if rate is not None else ""
        lines.append(f"uncertain: {provider} does not say whether an edit also bills its {seconds:g} s of input"
                     f"{extra}; this estimate counts the output only")
    if usd is None:
        note = (f"{provider} publishes no USD rate for HappyHorse {req.version} {req.resolution}"
                if seconds is not None else "needs the source video's length")
        lines.append(note)
    if table.source:
        lines.append(f"rates: {table.source}")
    return Estimate(provider=provider, version=req.version, mode=req.mode, resolution=req.resolution,
                    billed_seconds=seconds, usd_per_second=rate, usd=usd, credits=credits, note=note,
                    lines=tuple(lines))


def check_price(req: GenerationRequest, adapter, all_caps=None) -> Estimate:
    """Validate what the price depends on, then price it. Inputs are counted, never read, probed or uploaded:
    the price does not depend on the pixels (an edit's depends on the source's length, source_video_duration_s),
    so an estimate needs neither the files nor an upload bucket, on any host."""
    from .validation import validate_request

    validate_request(req, adapter.caps, all_caps, media=False)
    return estimate(req, adapter.name, adapter.prices)
