"""Several generation jobs at once vs one after another, through the real runner against the simulator.

A ComfyUI graph with several HappyHorse nodes (or a CLI batch) waits on the provider, not the CPU, so jobs
should overlap. Both modes run in this one process on the same simulator, side by side.

    python -m benchmarks.concurrency [--jobs 4] [--process-s 4]

Prints one JSON line: wall seconds for each mode and the ratio.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time

from happyhorse.engine.request import GenerationRequest
from happyhorse.engine.runner import JobRunner, RunOptions
from happyhorse.providers.registry import all_caps, resolve_endpoint
from happyhorse.simulator.core import SimTiming
from happyhorse.simulator.server import SimulatorServer

from benchmarks.figures import Figure


async def batch(runner: JobRunner, n: int, first_seed: int, workdir: str, parallel: bool) -> float:
    reqs = [GenerationRequest(mode="t2v", prompt=f"job {i}", duration_s=3, seed=first_seed + i, resolution="720p")
            for i in range(n)]
    t0 = time.perf_counter()
    if parallel:
        await asyncio.gather(*(runner.run(r, RunOptions(out_dir=workdir)) for r in reqs))
    else:
        for r in reqs:
            await runner.run(r, RunOptions(out_dir=workdir))
    return time.perf_counter() - t0


async def main_async(jobs: int, process_s: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp, SimulatorServer(timing=SimTiming(1.0, process_s)) as sim:
        os.environ["DASHSCOPE_API_KEY"] = "sk-benchmark"
        runner = JobRunner(resolve_endpoint("dashscope", base_url=sim.base_url("dashscope")), all_caps=all_caps())
        sequential = await batch(runner, jobs, 100, tmp, parallel=False)
        parallel = await batch(runner, jobs, 200, tmp, parallel=True)
    return {"jobs": jobs, "provider_time_per_job_s": 1.0 + process_s, "sequential_s": round(sequential, 2),
            "parallel_s": round(parallel, 2), "speedup": round(sequential / parallel, 2)}


def figures(quick: bool = False) -> list[Figure]:
    jobs, process_s = (3, 2.0) if quick else (4, 4.0)
    r = asyncio.run(main_async(jobs, process_s))
    return [Figure(f"{jobs} jobs at once through the runner ({r['provider_time_per_job_s']:g} s each at the host)",
                   r["parallel_s"], "s", "one after another", r["sequential_s"])]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--process-s", type=float, default=4.0)
    a = ap.parse_args()
    print(json.dumps(asyncio.run(main_async(a.jobs, a.process_s))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
