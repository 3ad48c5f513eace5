"""The simulator's HTTP server: every simulated host under its own path prefix, plus files and a control API.

  /dashscope/...      DashScope protocol (more hosts mount next to it from protocols/)
  /files/{id}.mp4     result videos
Only requests addressed to this machine (a loopback Host header: no DNS rebinding) and not sent cross-origin
are answered. The control routes below exist only when asked for (control=True: tests and benchmarks), and
their POSTs must be JSON (a web page's form cannot send that without a preflight, which is never answered):
  /_sim/stats         submissions per host, jobs, recent requests (for tests)
  /_sim/faults        POST a fault to inject: {"provider", "stage", "kind", ...}; stages:
                      submit | poll | cancel | upload (HTTP level, see fault_middleware),
                      job (kind fail + reason, stuck, slow + seconds [+ queue_seconds]), download (truncate | corrupt | status);
                      quirks a real host may show: another 2xx code, a 2xx without the task id, an undocumented
                      status word, an error inside an HTTP 200 envelope (see fault_middleware)
  /_sim/timing        POST {"queue_s", "process_s"}
  /_sim/limits        POST {"provider", "jobs_at_once": N | null}: the account's limit of unfinished jobs at that
                      host; a submit over it is answered 429 in the host's shape, as a host at its cap does
  /_sim/blobs/{name}  PUT bytes / GET them back: a stand-in public file host for URL-only tests
"""
from __future__ import annotations

import asyncio
import atexit
import ipaddress
import json
import os
import threading
import zlib
from types import ModuleType
from urllib.parse import urlsplit

from aiohttp import web

from .core import KEEP_S, SimCore, SimTiming
from .protocols import aimlapi, apiframe, apixo, dashscope, getimg, reapi

# Each protocol module provides: PREFIX, routes(sim), stage_of(method, path), error_response(status, msg, headers),
# and where its replies keep the task id (SUBMIT_ID: path in the submit reply) and the status word (STATUS_WORD:
# path in the poll reply), so quirks can be injected the same way for every host.
PROTOCOL_MODULES: dict[str, ModuleType] = {
    "dashscope": dashscope,
    "getimg": getimg,
    "apixo": apixo,
    "apiframe": apiframe,
    "aimlapi": aimlapi,
    "reapi": reapi,
}
PREFIXES: dict[str, str] = {name: mod.PREFIX for name, mod in PROTOCOL_MODULES.items()}


def _provider_for(path: str) -> str | None:
    for name, prefix in PREFIXES.items():
        if path.startswith(prefix + "/"):
            return name
    return None


def fault_middleware(sim: SimCore):
    """Injected faults for any protocol, by the stage the protocol says a request belongs to.

    kinds: status (HTTP error in the host's shape, optional retry_after / headers; `http_status` answers it with
    that HTTP status instead, e.g. 200 for an error inside APIXO's envelope), drop (close the connection
    before handling), drop_after (handle it - e.g. accept the submit - then close without answering),
    slow (wait `seconds`, then answer normally). Quirks (the request is handled normally, then its answer is
    changed): answer_status (the same body with another 2xx `status`), no_id (a 2xx submit answer without the
    task id: the job was accepted all the same), status_word (the poll answer carries `word` as its status).
    Hostile or broken hosts: echo (HTTP `status` error whose message repeats the request, Authorization header
    included, as some hosts' error bodies do), malformed (handle it, then answer with bytes that are not HTTP),
    gzip_bomb (a 200 whose gzip body inflates to `megabytes` MB).
    """

    @web.middleware
    async def middleware(request: web.Request, handler):
        provider = _provider_for(request.path)
        stage = PROTOCOL_MODULES[provider].stage_of(request.method, request.path) if provider else None
        fault = sim.take_fault(provider, stage) if stage else None
        if fault is None:
            return await handler(request)
        kind = fault.get("kind")
        if kind == "status":
            headers = dict(fault.get("headers") or {})
            if "retry_after" in fault:
                headers["Retry-After"] = str(fault["retry_after"])
            sim.record_request(provider, request.method, request.path, dict(request.headers), {"fault": fault})
            resp = PROTOCOL_MODULES[provider].error_response(int(fault["status"]),
                                                             str(fault.get("message", "simulated fault")), headers)
            if "http_status" in fault:
                resp.set_status(int(fault["http_status"]))
            return resp
        if kind in QUIRKS:
            return _quirk(PROTOCOL_MODULES[provider], fault, await handler(request))
        if kind == "echo":
            sim.record_request(provider, request.method, request.path, dict(request.headers), {"fault": fault})
            dump = "\n".join(f"{k}: {v}" for k, v in request.headers.items())
            message = f"invalid request {request.method} {request.path_qs}\n{dump}\n\n{await request.text()}"
            return PROTOCOL_MODULES[provider].error_response(int(fault.get("status", 400)), message, {})
        if kind == "malformed":
            await handler(request)
            if request.transport is not None:
                request.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nBad\x00Header: x\r\n\r\n{}")
            _drop(request)
        if kind == "gzip_bomb":
            sim.record_request(provider, request.method, request.path, dict(request.headers), {"fault": fault})
            return web.Response(body=_gzip_bomb(int(fault.get("megabytes", 100))),
                                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
        if kind == "drop":
            sim.record_request(provider, request.method, request.path, dict(request.headers), {"fault": fault})
            _drop(request)
        if kind == "slow":
            await asyncio.sleep(float(fault.get("seconds", 3)))
            return await handler(request)
        if kind == "drop_after":
            await handler(request)
            _drop(request)
        raise ValueError(f"unknown fault kind {kind!r}")

    return middleware


def limits_middleware(sim: SimCore):
    """A host at the account's limit of jobs at once refuses the submit with 429 before taking the job."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        provider = _provider_for(request.path)
        mod = PROTOCOL_MODULES[provider] if provider else None
        if mod is not None and mod.stage_of(request.method, request.path) == "submit" and sim.at_limit(provider):
            sim.record_request(provider, request.method, request.path, dict(request.headers), {"refused": "busy"})
            return mod.error_response(429, f"too many tasks at once for this account (limit "
                                           f"{sim.job_limits[provider]}); retry later", {})
        return await handler(request)

    return middleware


QUIRKS = ("answer_status", "no_id", "status_word")


def _quirk(mod: ModuleType, fault: dict, resp: web.StreamResponse) -> web.StreamResponse:
    """Change a handled request's 2xx JSON answer the way a real host might (see fault_middleware)."""
    if not isinstance(resp, web.Response) or not 200 <= resp.status < 300 or resp.body is None:
        return resp         # only a success answer can carry the quirk; a refusal stays as it is
    body = json.loads(resp.body)
    if fault["kind"] == "no_id":
        _set_path(body, mod.SUBMIT_ID, None)
    elif fault["kind"] == "status_word":
        _set_path(body, mod.STATUS_WORD, str(fault["word"]))
    headers = {k: v for k, v in resp.headers.items() if k.lower() not in ("content-length", "content-type")}
    status = int(fault.get("status", resp.status)) if fault["kind"] == "answer_status" else resp.status
    return web.json_response(body, status=status, headers=headers)


def _set_path(body: dict, path: tuple[str, ...], value) -> None:
    """Set (value) or remove (None) the field at `path` in a JSON object."""
    for key in path[:-1]:
        body = body.setdefault(key, {})
    if value is None:
        body.pop(path[-1], None)
    else:
        body[path[-1]] = value


def _gzip_bomb(megabytes: int) -> bytes:
    """`megabytes` MB of spaces, gzip-compressed a megabyte at a time (about 1 KB on the wire per MB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * (1 << 20)
    return b"".join([*(packer.compress(block) for _ in range(megabytes)), packer.flush()])


def _drop(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()
    raise asyncio.CancelledError()


def _loopback_host(host: str) -> bool:
    name = urlsplit("//" + host).hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@web.middleware
async def local_only_middleware(request: web.Request, handler):
    """Keep web pages out: the simulator serves this machine's programs, not its browser's pages."""
    if not _loopback_host(request.host):
        return web.json_response({"error": "the simulator answers only requests addressed to this machine"},
                                 status=403)
    origin = request.headers.get("Origin")
    fetch_site = request.headers.get("Sec-Fetch-Site", "none")
    if (origin is not None and origin != f"{request.scheme}://{request.host}") \
            or fetch_site not in ("none", "same-origin"):
        return web.json_response({"error": "cross-origin requests are refused"}, status=403)
    if request.path.startswith("/_sim/") and request.method == "POST" and request.content_type != "application/json":
        return web.json_response({"error": "send JSON (Content-Type: application/json)"}, status=415)
    return await handler(request)


def build_app(sim: SimCore, control: bool = False) -> web.Application:
    app = web.Application(client_max_size=120 << 20,
                          middlewares=[local_only_middleware, fault_middleware(sim), limits_middleware(sim)])
    for mod in PROTOCOL_MODULES.values():
        app.add_routes(mod.routes(sim))

    async def files(request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["job_id"]
        path = sim.video_path(job_id)
        if path is None:
            return web.json_response({"error": "no such video"}, status=404)
        job = sim.jobs[job_id]
        job.downloads += 1
        fault = sim.take_fault(job.spec.provider, "download")
        data = open(path, "rb").read()
        if fault and fault.get("kind") == "truncate":
            # Declares the full length but sends only part: the client sees the connection end early.
            resp = web.StreamResponse(headers={"Content-Type": "video/mp4", "Content-Length": str(len(data))})
            await resp.prepare(request)
            await resp.write(data[: len(data) // 2])
            request.transport.close() if request.transport else None
            return resp
        if fault and fault.get("kind") == "corrupt":
            mid = len(data) // 2
            data = data[:mid] + os.urandom(min(65536, len(data) - mid)) + data[mid + 65536:]
        if fault and fault.get("kind") == "status":
            return web.json_response({"error": "simulated"}, status=int(fault["status"]))
        return web.Response(body=data, content_type="video/mp4")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({
            "submissions": dict(sim.submissions),
            "jobs": {j.id: {"provider": j.spec.provider, "mode": j.spec.mode, "polls": j.polls,
                            "canceled": j.canceled, "downloads": j.downloads, "created": j.created_wall,
                            "finished": j.finished_at, "ready": sim.ready_at(j)} for j in sim.jobs.values()},
            "requests": {p: list(q) for p, q in sim.requests.items()},
            "blob_downloads": dict(sim.blob_downloads),
            "peak_jobs": dict(sim.peak_jobs),
            "refused_busy": dict(sim.refused_busy),
        })

    async def faults(request: web.Request) -> web.Response:
        fault = await request.json()
        sim.faults[fault["provider"]].append(fault)
        return web.json_response({"queued": len(sim.faults[fault["provider"]])})

    async def timing(request: web.Request) -> web.Response:
        data = await request.json()
        sim.timing = SimTiming(float(data.get("queue_s", sim.timing.queue_s)),
                               float(data.get("process_s", sim.timing.process_s)))
        return web.json_response({"queue_s": sim.timing.queue_s, "process_s": sim.timing.process_s})

    async def limits(request: web.Request) -> web.Response:
        data = await request.json()
        provider, limit = str(data["provider"]), data.get("jobs_at_once")
        if limit is None:
            sim.job_limits.pop(provider, None)
        else:
            sim.job_limits[provider] = int(limit)
        return web.json_response({"jobs_at_once": sim.job_limits})

    async def put_blob(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        sim.public_blobs[name] = (await request.read(), request.headers.get("Content-Type",
                                                                            "application/octet-stream"))
        return web.json_response({"url": f"{request.scheme}://{request.host}/_sim/blobs/{name}"})

    async def get_blob(request: web.Request) -> web.Response:
        blob = sim.public_blobs.get(request.match_info["name"])
        if blob is None:
            return web.json_response({"error": "no such blob"}, status=404)
        sim.blob_downloads[request.match_info["name"]] += 1
        return web.Response(body=blob[0], content_type=blob[1])

    app.router.add_get("/files/{job_id}.mp4", files)
    if control:
        app.router.add_put("/_sim/blobs/{name}", put_blob)
        app.router.add_get("/_sim/blobs/{name}", get_blob)
        app.router.add_get("/_sim/stats", stats)
        app.router.add_post("/_sim/faults", faults)
        app.router.add_post("/_sim/timing", timing)
        app.router.add_post("/_sim/limits", limits)
    return app


class SimulatorServer:
    """Runs the simulator on 127.0.0.1 in a background thread with its own event loop."""

    def __init__(self, port: int = 0, timing: SimTiming | None = None, workdir: str | None = None,
                 keep_s: float = KEEP_S, control: bool = False):
        self.core = SimCore(timing, workdir, keep_s)
        self._port = port
        self.control = control              # serve /_sim/* (faults, timing, stats, blobs): tests and benchmarks
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    def base_url(self, provider: str) -> str:
        return self.url + PREFIXES[provider]

    def start(self) -> "SimulatorServer":
        ready = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._start_site())
            except BaseException as exc:  # report start-up failure to the caller's thread
                error.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="happyhorse-simulator", daemon=True)
        self._thread.start()
        ready.wait(30)
        if error:
            raise error[0]
        return self

    async def _start_site(self) -> None:
        self._runner = web.AppRunner(build_app(self.core, self.control), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self.core.close()

    def __enter__(self) -> "SimulatorServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


CONTROL_ENV = "HAPPYHORSE_SIM_CONTROL"       # "1": the in-process simulator serves /_sim/* (integration tests)
_shared: SimulatorServer | None = None
_shared_lock = threading.Lock()


def shared_simulator() -> SimulatorServer:
    """One simulator per process, started on first use (for `--provider simulator` and the nodes); its jobs and
    videos live as long as the process (stopped, and its temporary folder removed, at exit)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            timing = SimTiming(float(os.environ.get("HAPPYHORSE_SIM_QUEUE_S", 0.5)),
                               float(os.environ.get("HAPPYHORSE_SIM_PROCESS_S", 2.0)))
            control = os.environ.get(CONTROL_ENV, "") == "1"
            _shared = SimulatorServer(timing=timing, control=control).start()
            atexit.register(_shared.stop)
        return _shared
