"""The README's first command: real videos from the built-in simulator, no key, no network."""
from __future__ import annotations

import asyncio
import io
import json
import math
import sys
import time
from pathlib import Path

from .engine.ledger import Ledger
from .engine.request import GenerationRequest, MediaInput
from .engine.runner import JobRunner, RunOptions
from .providers.registry import all_caps, resolve_endpoint


def sample_image(width: int = 960, height: int = 540, hue: float = 0.0, label: str = "") -> bytes:
    """A drawn landscape (sky, sun, hills) so the demo needs no files; returned as PNG bytes."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(img)
    for y in range(height):
        t = y / height
        r = int(80 + 120 * t + 40 * math.sin(hue))
        g = int(140 + 60 * t)
        b = int(230 - 90 * t + 20 * math.cos(hue))
        draw.line([(0, y), (width, y)], fill=(max(0, min(255, r)), g, max(0, min(255, b))))
    draw.ellipse([width * 0.7, height * 0.1, width * 0.85, height * 0.1 + width * 0.15], fill=(255, 220, 90))
    for i, shade in enumerate((70, 100, 130)):
        top = height * (0.55 + 0.1 * i)
        draw.polygon([(0, height), (0, top), (width * 0.35, top - 60 + 20 * i), (width * 0.7, top + 10),
                      (width, top - 30), (width, height)], fill=(40, shade, 50 + 10 * i))
    if label:
        draw.text((20, 20), label, fill=(255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


async def _demo(out_dir: Path, say) -> list[dict]:
    endpoint = resolve_endpoint("simulator")
    runner = JobRunner(endpoint, ledger=Ledger(), all_caps=all_caps())
    first = MediaInput.image_bytes(sample_image(label="first frame"), "first.png")
    refs = tuple(MediaInput.image_bytes(sample_image(640, 640, hue=h, label=f"ref {i + 1}"), f"ref{i + 1}.png")
                 for i, h in enumerate((0.0, 2.0)))
    jobs = {
        "t2v": GenerationRequest(mode="t2v", prompt="A chestnut horse gallops along a beach at sunset",
                                 resolution="720p", aspect_ratio="16:9", duration_s=3, seed=7),
        "i2v": GenerationRequest(mode="i2v", prompt="The camera slowly pushes in over the hills",
                                 first_frame=first, resolution="720p", duration_s=3, seed=8),
        "r2v": GenerationRequest(mode="r2v", prompt="[Image 1] and [Image 2] blend into one valley at dawn",
                                 reference_images=refs, resolution="720p", aspect_ratio="1:1", duration_s=3),
    }

    started = time.monotonic()

    async def one(name: str, req: GenerationRequest) -> dict:
        result = (await runner.run(req, RunOptions(out_path=str(out_dir / f"demo_{name}.mp4")))).as_dict()
        say(f"  {result['mode']:<4} {result['path']}  {result['width']}x{result['height']} "
            f"{result['duration_s']:.1f}s audio={'yes' if result['has_audio'] else 'no'}  "
            f"({time.monotonic() - started:.1f} s)")
        return result

    say(f"Making {len(jobs)} videos on the built-in simulator (free, offline), at the same time:")
    return list(await asyncio.gather(*(one(n, r) for n, r in jobs.items())))


def run_demo(out_dir: Path, as_json: bool = False) -> int:
    """Each video is reported (absolute path) the moment it is ready; with as_json the progress goes to stderr
    and the results to stdout."""
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    def say(line: str) -> None:
        print(line, file=sys.stderr if as_json else sys.stdout, flush=True)

    results = asyncio.run(_demo(out_dir, say))
    if as_json:
        print(json.dumps(results, indent=2))
    return 0
