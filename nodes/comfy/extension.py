"""The ComfyUI extension: the node list, and the price route the web extension asks."""
from __future__ import annotations

from comfy_api.latest import ComfyExtension, io
from typing_extensions import override

from .cost import CostEstimate
from .generation import CollectJob, Image2Video, Reference2Video, Text2Video, VideoEdit
from .routes import add_routes


class HappyHorseExtension(ComfyExtension):
    @override
    async def on_load(self) -> None:
        add_routes()

    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [Text2Video, Image2Video, Reference2Video, VideoEdit, CostEstimate, CollectJob]
