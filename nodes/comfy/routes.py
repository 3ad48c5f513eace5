"""POST /happyhorse/price: the price pill in web/ sends a node's widget values and shows the answer.

The price comes from the same tables and rules as the Cost Estimate node and the runner, so the pill, the
node and the bill agree. Nothing is sent to any provider.
"""
from __future__ import annotations

from aiohttp import web

from ..engine.errors import HappyHorseError
from .estimates import price_for_widgets

ROUTE = "/happyhorse/price"
_added = False


async def price(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        answer = price_for_widgets(str(body["node_type"]), dict(body["widgets"]))
    except (HappyHorseError, KeyError, TypeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(answer)


def add_routes() -> None:
    # Imported here, not at the top, so `price` itself loads without ComfyUI (tests/web serves it to a browser).
    from server import PromptServer

    global _added
    if not _added:
        PromptServer.instance.routes.post(ROUTE)(price)
        _added = True
