"""Run every benchmark: a table on stdout and a JSON file with each figure, its baseline and the ratio.

    python -m benchmarks [--quick] [--json benchmarks.json] [--only upload_prep,decode_memory]

--quick runs smaller cases (for CI: it shows nothing broke, its numbers are not the README's). Figures that need
a real ComfyUI (COMFYUI_DIR / COMFYUI_PYTHON) are skipped, saying so, without one.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time

MODULES = ("upload_prep", "decode_memory", "concurrency", "poll_latency", "comfy_graph")


def machine() -> str:
    return f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, " \
           f"load {os.getloadavg()[0]:.1f} at start"


def table(rows: list[dict]) -> str:
    lines = ["| figure | ours | baseline (same run) | ratio | goal | met |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['module']} | skipped: {r['skipped']} | | | | |")
            continue
        base = f"{r['baseline']} {r['unit']} ({r['baseline_name']})" if r["baseline"] is not None else ""
        met = "" if r["met"] is None else ("yes" if r["met"] else "no")
        lines.append(f"| {r['name']} | {r['value']} {r['unit']} | {base} | {r['ratio'] or ''} | {r['goal']} | {met} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks")
    ap.add_argument("--quick", action="store_true", help="small cases, for CI")
    ap.add_argument("--json", default="benchmarks.json", help="where to write the figures (default %(default)s)")
    ap.add_argument("--only", default="", help="comma-separated modules: " + ", ".join(MODULES))
    a = ap.parse_args()
    chosen = [m for m in MODULES if not a.only or m in a.only.split(",")]
    rows: list[dict] = []
    started = time.time()
    host = machine()
    for name in chosen:
        module = importlib.import_module(f"benchmarks.{name}")
        t0 = time.perf_counter()
        skip = getattr(module, "skip_reason", lambda: None)()
        if skip:
            rows.append({"module": name, "skipped": skip})
        else:
            rows.extend({"module": name, **f.as_dict()} for f in module.figures(quick=a.quick))
        print(f"[{name}: {time.perf_counter() - t0:.0f} s]", file=sys.stderr)
    print(table(rows))
    with open(a.json, "w") as fh:
        json.dump({"machine": host, "quick": a.quick, "started": started, "figures": rows}, fh, indent=1)
    print(f"\n{host}; figures in {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
