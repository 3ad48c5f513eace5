"""Upload prep: IMAGE tensors (ComfyUI's float32 batches) to upload-ready files, ours vs the previous way.

Ours (nodes/comfy/tensors.py): the encoding follows what the host does with the picture - a reference is only
looked at, so JPEG q95 4:4:4; a first frame becomes the video's first frame, so lossless PNG at a fast zlib
level - with all pictures encoded on every core at once. Baseline: PNG at Pillow's default level, one picture
after another (what the nodes did before). Pictures are photographs scaled to 1920x1080 with sensor-like noise,
so PNG has real work to do.

    python -m benchmarks.upload_prep [--images 9]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from happyhorse.comfy.tensors import batch_pictures, image_to_media, pictures_to_media
from happyhorse.engine.media import encode_image
from happyhorse.engine.request import MediaInput
from PIL import Image

from benchmarks.figures import Figure

PHOTOS = sorted((Path(__file__).resolve().parents[1] / "workflows" / "input").glob("*.jpg"))


def photo_batch(count: int, width: int = 1920, height: int = 1080) -> torch.Tensor:
    rng = np.random.default_rng(1)
    pictures = []
    for i in range(count):
        with Image.open(PHOTOS[i % len(PHOTOS)]) as img:
            rgb = np.asarray(img.convert("RGB").resize((width, height), Image.BICUBIC), dtype=np.float32) / 255
        pictures.append(np.clip(rgb + rng.normal(0, 1.5 / 255, rgb.shape).astype(np.float32), 0, 1))
    return torch.from_numpy(np.stack(pictures))


def previous_way(batch: torch.Tensor) -> list[MediaInput]:
    out = []
    for i in range(batch.shape[0]):
        rgb = np.clip(np.rint(batch[i].numpy() * 255.0), 0, 255).astype(np.uint8)
        out.append(MediaInput.image_bytes(encode_image(rgb, "PNG"), name=f"reference{i + 1}.png"))
    return out


def timed(fn, *args, **kwargs) -> tuple[float, list[MediaInput]]:
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - t0, result


def figures(quick: bool = False, images: int = 9) -> list[Figure]:
    batch = photo_batch(3 if quick else images)
    n = batch.shape[0]
    base_s, base = timed(previous_way, batch)
    refs_s, refs = timed(pictures_to_media, batch_pictures(batch, "reference"), lossless=False)
    first_base_s, _ = timed(previous_way, batch[:1])
    first_s, _ = timed(image_to_media, batch, 0, "first_frame")
    mb = lambda media: round(sum(len(m.data) for m in media) / 1e6, 1)   # noqa: E731
    return [
        Figure(f"{n} reference images 1920x1080 (IMAGE batch) to upload-ready media", round(refs_s, 3), "s",
               "PNG at the default level, one after another", round(base_s, 3), "< 1 s (9 images)",
               refs_s < 1.0 if n == 9 else None, f"{mb(refs)} MB of JPEG vs {mb(base)} MB of PNG"),
        Figure("a 1920x1080 first frame to lossless upload-ready PNG", round(first_s, 3), "s",
               "PNG at the default level", round(first_base_s, 3)),
    ]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=9)
    print(json.dumps([f.as_dict() for f in figures(images=ap.parse_args().images)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
