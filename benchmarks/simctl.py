"""The simulator's control API (/_sim/...) as the benchmarks use it: inject a fault, read the stats."""
from __future__ import annotations

import json
import urllib.request


def inject_fault(sim_url: str, fault: dict) -> None:
    req = urllib.request.Request(sim_url + "/_sim/faults", data=json.dumps(fault).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()


def sim_stats(sim_url: str) -> dict:
    with urllib.request.urlopen(sim_url + "/_sim/stats") as r:
        return json.loads(r.read())
