"""The ComfyUI extension: the node list, and the price route the web extension asks.

Two copies of the pack in custom_nodes (say a Manager install and a git clone under another folder name) are
two separate imports. The second must not take ComfyUI down (aiohttp refuses a route registered twice, at
start-up) nor replace the first copy's nodes with its own: it finds the first copy's route, logs one line and
loads nothing: no route, no nodes, no second copy of the web extension.
"""
from __future__ import annotations

import logging
import os
import sys

from comfy_api.latest import ComfyExtension, io
from typing_extensions import override

from .cost import CostEstimate
from .generation import CollectJob, Image2Video, Reference2Video, Text2Video, VideoEdit
from .routes import add_routes, pack_dir

log = logging.getLogger("happyhorse")


class HappyHorseExtension(ComfyExtension):
    duplicate_of: str | None = None

    @override
    async def on_load(self) -> None:
        self.duplicate_of = add_routes()
        if self.duplicate_of is not None:
            log.warning("HappyHorse: another copy of this pack is already loaded from %s, so the copy in %s is "
                        "skipped; remove one of the two folders from custom_nodes.", self.duplicate_of, pack_dir())
            _withdraw_web_directory(os.path.join(pack_dir(), "web"))

    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        if self.duplicate_of is not None:
            return []
        return [Text2Video, Image2Video, Reference2Video, VideoEdit, CostEstimate, CollectJob]


def _withdraw_web_directory(web_dir: str) -> None:
    """ComfyUI registered this copy's WEB_DIRECTORY before calling the entry point; take it back, or the browser
    would load the extension twice."""
    web_dirs = getattr(sys.modules.get("nodes"), "EXTENSION_WEB_DIRS", None)     # ComfyUI's nodes.py
    if isinstance(web_dirs, dict):
        for name, path in list(web_dirs.items()):
            if os.path.abspath(path) == os.path.abspath(web_dir):
                del web_dirs[name]
