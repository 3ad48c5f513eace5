"""Frame output memory and time: our bounded decode vs the naive decode common in other packs.

Naive (what several community packs do): decode every frame to float32, keep a Python list, then np.stack —
peak memory is about twice the full clip. Ours: plan the frames (cap / step / max side), allocate the output
once and decode each frame straight into it. Also: a downloaded clip's check plus its frames, as two decodes
(verify, then decode) against one (the frames taken from the check's own pass, media.FrameSink).

    python -m benchmarks.decode_memory [--seconds 5] [--resolution 1080p]

Both run in this one process, side by side on the same file; peak memory is measured with tracemalloc (numpy
reports its buffers to it) in a second, traced run; times come from the untraced run. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import tracemalloc

import av
import numpy as np
from happyhorse.comfy.tensors import FrameCollector, FrameLimits, decode_video_frames
from happyhorse.engine.media import decode_frames_into, frames_buffer, plan_frames, probe_video, verify_video
from happyhorse.simulator.video import ClipSpec, output_size, render_clip

from benchmarks.figures import Figure


def naive_decode(path: str) -> np.ndarray:
    frames = []
    with av.open(path) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24").astype(np.float32) / 255.0)
    return np.stack(frames)


def bounded_decode(path: str, max_frames: int, max_side: int) -> np.ndarray:
    plan = plan_frames(probe_video(path), max_frames=max_frames, max_side=max_side)
    out = frames_buffer(plan)             # what the nodes' decode allocates (tracemalloc sees numpy's memory)
    decode_frames_into(path, plan, out)
    return out


def verify_then_decode(path: str):
    verify_video(path)
    return decode_video_frames(path, FrameLimits(max_mb=1 << 20)).frames


def verify_with_frames(path: str):
    collector = FrameCollector(FrameLimits(max_mb=1 << 20))
    verify_video(path, collector)
    return collector.frames().frames


def measure(fn, *args) -> tuple[float, int, tuple]:
    """Wall time from an untraced run, peak memory from a second, traced run (tracing slows allocation)."""
    t0 = time.perf_counter()
    shape = fn(*args).shape
    elapsed = time.perf_counter() - t0
    tracemalloc.start()
    result = fn(*args)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return elapsed, peak, shape


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def figures(quick: bool = False) -> list[Figure]:
    seconds, resolution = (2, "720p") if quick else (5, "1080p")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "clip.mp4")
        w, h = output_size(resolution, "16:9")
        render_clip(ClipSpec(width=w, height=h, duration_s=seconds, prompt="benchmark", seed=1), path)
        naive_t, _, _ = measure(naive_decode, path)
        full_t, full_peak, shape = measure(bounded_decode, path, 0, 0)
        two_t, one_t = timed(verify_then_decode, path), timed(verify_with_frames, path)
    tensor_mb = shape[0] * shape[1] * shape[2] * 3 * 4 / 1e6
    clip = f"{seconds} s {resolution}"
    return [
        Figure(f"frames of a {clip} clip as float32", round(full_t, 2), "s",
               "naive: float32 per frame, list, np.stack", round(naive_t, 2), "<= 0.2x naive",
               full_t / naive_t <= 0.2),
        Figure(f"peak memory of that decode ({tensor_mb:.0f} MB tensor)", round(full_peak / 1e6), "MB",
               "the tensor itself", round(tensor_mb), "<= 1.05 x tensor + 150 MB",
               full_peak / 1e6 <= 1.05 * tensor_mb + 150),
        Figure(f"downloaded {clip} clip checked and turned into frames", round(one_t, 2), "s",
               "check, then a second decode for the frames", round(two_t, 2)),
    ]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--resolution", default="1080p")
    ap.add_argument("--max-frames", type=int, default=48)
    ap.add_argument("--max-side", type=int, default=1024)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "clip.mp4")
        w, h = output_size(a.resolution, "16:9")
        render_clip(ClipSpec(width=w, height=h, duration_s=a.seconds, prompt="benchmark", seed=1), path)
        naive_t, naive_peak, naive_shape = measure(naive_decode, path)
        full_t, full_peak, full_shape = measure(bounded_decode, path, 0, 0)
        cap_t, cap_peak, cap_shape = measure(bounded_decode, path, a.max_frames, a.max_side)
    report = {
        "clip": f"{w}x{h} {a.seconds:g}s 24fps",
        "naive": {"frames": naive_shape[0], "peak_mb": round(naive_peak / 1e6), "seconds": round(naive_t, 2)},
        "ours_all_frames": {"frames": full_shape[0], "peak_mb": round(full_peak / 1e6), "seconds": round(full_t, 2)},
        "ours_default_cap": {"frames": cap_shape[0], "size": f"{cap_shape[2]}x{cap_shape[1]}",
                             "peak_mb": round(cap_peak / 1e6), "seconds": round(cap_t, 2)},
        "peak_ratio_naive_vs_ours_all_frames": round(naive_peak / full_peak, 2),
        "peak_ratio_naive_vs_ours_capped": round(naive_peak / cap_peak, 1),
        "time_ratio_naive_vs_ours_all_frames": round(naive_t / full_t, 2),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
