"""The Cost Estimate node: prices a job from the rate tables; sends nothing, runs nothing."""
from __future__ import annotations

from typing import Any

from comfy_api.latest import io, ui

from . import specs
from .schema import build_schema
from .words import COST_ESTIMATE, in_widget_words


class CostEstimate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return build_schema(specs.cost_estimate())

    @classmethod
    @in_widget_words(COST_ESTIMATE)
    def execute(cls, **values: Any) -> io.NodeOutput:
        from .estimates import breakdown, price_from_mode_combo, usd_or_unknown     # loaded on first use

        v = specs.with_defaults(specs.cost_estimate().fields, values)
        mode, source_video = v.get("mode"), v.get("source_video")
        seconds = float(source_video.get_duration()) if source_video is not None else None
        est = price_from_mode_combo(mode, seconds)
        text = breakdown(est)
        return io.NodeOutput(usd_or_unknown(est), text, ui=ui.PreviewText(text))
