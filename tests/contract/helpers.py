"""Helpers the contract tests share: the simulator's control API, the request log, blobs, runners, probing clips."""
import json
import urllib.error
import urllib.request

import av

from happyhorse.engine.ledger import Ledger
from happyhorse.engine.request import GenerationRequest
from happyhorse.engine.runner import JobRunner, RunOptions
from happyhorse.providers.registry import all_caps, resolve_endpoint
from tests.conftest import png_bytes


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def stats(sim):
    return http("GET", sim.url + "/_sim/stats")[1]


def probe(path):
    with av.open(path) as c:
        v = c.streams.video[0]
        return {"codec": v.codec_context.name, "w": v.codec_context.width, "h": v.codec_context.height,
                "fps": float(v.average_rate), "audio": len(c.streams.audio) == 1,
                "dur": float(v.duration * v.time_base)}


def put_blob(sim, name, data, content_type):
    req = urllib.request.Request(f"{sim.url}/_sim/blobs/{name}", data=data, method="PUT",
                                 headers={"Content-Type": content_type})
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read())["url"]


def image_url(sim, name, w=800, h=600, color=(200, 80, 40)):
    """A PNG of w x h served by the simulator as the blob `name`; its URL."""
    return put_blob(sim, name, png_bytes(w, h, color=color), "image/png")


def make_runner(sim, tmp_path, provider):
    ep = resolve_endpoint(provider, base_url=sim.base_url(provider))
    return JobRunner(ep, ledger=Ledger(tmp_path / "l.sqlite3"), all_caps=all_caps())


def sent(sim, provider, method="POST", *, faults=True):
    """The requests `provider` received with this method; faults=False leaves out the simulator's injected faults."""
    return [r for r in stats(sim)["requests"].get(provider, []) if r["method"] == method and
            (faults or "fault" not in (r["body"] or {}))]


def no_request_reached(sim, provider):
    return provider not in stats(sim)["requests"] and stats(sim)["submissions"] == {}


def run(runner, tmp_path, **kw):
    return runner.run(GenerationRequest(**{"version": "1.0", "resolution": "720p", "duration_s": 3, **kw}),
                      RunOptions(out_dir=str(tmp_path)))
