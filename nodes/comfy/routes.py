"""The pack's HTTP routes under ComfyUI's /api: the price pill and the HappyHorse panel in web/.

  POST /happyhorse/price                 a node's widget values -> the estimate (same tables as the runner)
  GET  /happyhorse/jobs?limit=N          the ledger's jobs, newest first, as the panel shows them
  GET  /happyhorse/status                set-up at a glance (key yes/no per provider, bucket, DashScope region)
                                         and spend today / this month per provider, against [budget] limits
  GET  /happyhorse/jobs/{id}/video       a finished job's MP4 (?download=1: as an attachment); only a file the
                                         ledger names inside the output folder
  POST /happyhorse/jobs/{id}/cancel      cancel a queued or running job where its host allows

Nothing here sends a key, a header, a base URL or any other configuration to the page; bad requests get a 4xx
with the reason and change nothing. The handlers load without ComfyUI (tests/web serves them to a browser); only
add_routes() touches ComfyUI's server.
"""
from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from ..engine.errors import HappyHorseError
from ..providers.registry import ADAPTERS, resolve_endpoint, setup_status

if TYPE_CHECKING:
    from ..engine.ledger import Ledger

ROUTE = "/happyhorse/price"
JOB_ID = re.compile(r"[0-9a-f]{32}")
MAX_LIMIT = 200


async def price(request: web.Request) -> web.Response:
    from .estimates import price_for_widgets        # loaded on the first price asked, not at ComfyUI's start

    try:
        body = await request.json()
        answer = price_for_widgets(str(body["node_type"]), dict(body["widgets"]))
    except (HappyHorseError, KeyError, TypeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(answer)


def _refuse(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@dataclass
class Panel:
    """The panel's routes over one ledger and output folder. cancel_running(provider, task_id) asks a run in this
    process that follows the task to stop and cancel it (True), or says no run follows it (False)."""

    ledger_path: Path
    output_dir: Path
    cancel_running: Callable[[str, str], bool] = lambda provider, task_id: False

    def ledger(self) -> Ledger:
        # The ledger, jobs and spend modules load on the panel's first request, not at ComfyUI's start.
        from ..engine.ledger import Ledger

        return Ledger(self.ledger_path)

    async def job(self, request: web.Request):
        job_id = request.match_info["job_id"]
        if not JOB_ID.fullmatch(job_id):
            raise web.HTTPBadRequest(text='{"error": "a job id is 32 hex digits"}', content_type="application/json")
        rec = await asyncio.to_thread(lambda: self.ledger().get(job_id))
        if rec is None:
            raise web.HTTPNotFound(text='{"error": "no such job in the HappyHorse ledger"}',
                                   content_type="application/json")
        return rec

    async def jobs(self, request: web.Request) -> web.Response:
        raw = request.query.get("limit", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            return _refuse(400, f"limit must be a whole number from 1 to {MAX_LIMIT}, got {raw!r}")
        from ..engine.jobs import list_jobs

        jobs = await asyncio.to_thread(lambda: list_jobs(self.ledger(), ADAPTERS, self.output_dir, int(raw)))
        return web.json_response({"jobs": jobs})

    async def status(self, request: web.Request) -> web.Response:
        from ..engine.budget import spend_summary

        try:
            setup = await asyncio.to_thread(setup_status)
        except HappyHorseError as exc:      # e.g. a config file that is not valid TOML: say so, show nothing of it
            setup = {"providers": [], "upload_bucket": False, "dashscope_region": "unknown",
                     "hints": [str(exc).split(":")[0] + ": fix the HappyHorse config file."]}
        try:
            spend = (await asyncio.to_thread(spend_summary, self.ledger())).as_dict()
        except HappyHorseError as exc:      # e.g. a [budget] limit that is not a number: name it, echo nothing of it
            spend = None
            key = re.search(r"\b(daily_usd|monthly_usd)\b", str(exc))
            setup["hints"].append(f"[budget] {key[1]} is not a limit: use a number of USD >= 0 (0 = no limit) in "
                                  f"the HappyHorse config file." if key else
                                  "Spend could not be read: fix the HappyHorse config file.")
        return web.json_response({"setup": setup, "spend": spend})

    async def video(self, request: web.Request) -> web.StreamResponse:
        from ..engine.jobs import video_file

        rec = await self.job(request)
        path = await asyncio.to_thread(video_file, rec, self.output_dir)
        if path is None:
            return _refuse(404, "this job has no finished video in the output folder")
        download = request.query.get("download", "0")
        if download not in ("0", "1"):
            return _refuse(400, "download must be 0 or 1")
        headers = {"Content-Type": "video/mp4", "Cache-Control": "no-cache"}
        if download == "1":
            headers["Content-Disposition"] = f'attachment; filename="{path.name}"'
        return web.FileResponse(path, headers=headers)

    async def cancel(self, request: web.Request) -> web.Response:
        from ..engine.jobs import cancel_unfollowed, job_view

        rec = await self.job(request)
        view = await asyncio.to_thread(job_view, rec, ADAPTERS, self.output_dir)
        if not view["can_cancel"]:
            why = ("it has no task id yet" if not rec.task_id else
                   f"it is {view['state']}" if view["state"] not in ("queued", "running") else
                   f"{view['provider_name']}'s API has no cancel")
            return _refuse(409, f"This job cannot be cancelled: {why}.")
        if self.cancel_running(rec.provider, rec.task_id):
            return web.json_response({"message": "Stopping: the node cancels the job at the provider within a "
                                                 "second."}, status=202)
        try:
            endpoint = await asyncio.to_thread(resolve_endpoint, rec.provider, None, rec.base_url)
            message = await cancel_unfollowed(rec, endpoint, await asyncio.to_thread(self.ledger))
        except HappyHorseError as exc:
            return _refuse(409, str(exc))
        return web.json_response({"message": message})

    def routes(self) -> list[tuple[str, str, Callable]]:
        return [("GET", "/happyhorse/jobs", self.jobs), ("GET", "/happyhorse/status", self.status),
                ("GET", "/happyhorse/jobs/{job_id}/video", self.video),
                ("POST", "/happyhorse/jobs/{job_id}/cancel", self.cancel)]


def add_routes() -> str | None:
    """Register the pack's routes. If another copy of the pack (another folder in custom_nodes) registered them
    already, register nothing and return that copy's folder: aiohttp would refuse a route twice at start-up."""
    # Imported here, not at the top, so the handlers load without ComfyUI.
    from server import PromptServer

    from .host import RUNS, ledger_path, output_dir

    routes = PromptServer.instance.routes
    for route in routes:
        if getattr(route, "path", None) == ROUTE:
            owner = getattr(getattr(route, "handler", None), "__module__", "")
            return None if owner == __name__ else pack_dir(owner)
    routes.post(ROUTE)(price)
    for method, path, handler in Panel(ledger_path(), Path(output_dir()), RUNS.cancel_task).routes():
        routes.route(method, path)(handler)
    return None


def pack_dir(module_name: str = __name__) -> str:
    """The custom_nodes folder a copy of the pack was loaded from, as ComfyUI named it (symlinks kept)."""
    file = getattr(sys.modules.get(module_name), "__file__", None)
    return str(Path(file).absolute().parents[2]) if file else module_name
