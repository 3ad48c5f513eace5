"""The nodes' words for the engine's fields (engine/fields.py), so an error names the widget or socket the user
sees: `duration` for duration_s, `image3` for the reference it holds. Every node's execute is wrapped by
in_widget_words, the one place a HappyHorseError is put into the node's words before ComfyUI shows it.
Nothing here imports comfy_api or the server (unit tests use it without a ComfyUI install).
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import replace
from typing import Any, Callable

from ..engine.errors import HappyHorseError
from ..engine.fields import Fix, Surface

# Widgets every generation node has (specs.py): the dynamic combo's nested widgets by their own names.
_COMMON = {"mode": "provider", "version": "version", "provider": "provider", "prompt": "prompt",
           "resolution": "resolution", "aspect_ratio": "aspect_ratio", "duration_s": "duration", "seed": "seed",
           "watermark": "watermark", "upload": "upload"}
_FIXES = {Fix.SUPPLY: "connect {name}", Fix.REMOVE: "disconnect {name}", Fix.REMOVE_ALL: "disconnect {name}",
          Fix.LEAVE_EMPTY: "leave {name} empty", Fix.TURN_OFF: "turn {name} off"}

TEXT2VIDEO = Surface(names=dict(_COMMON), fixes=_FIXES)
IMAGE2VIDEO = Surface(names={**_COMMON, "first_frame": "first_frame"}, fixes=_FIXES)
REFERENCE2VIDEO = Surface(names={**_COMMON, "reference_images": "images/image1..9",
                                 "reference_image": "images/image1..9"}, fixes=_FIXES)
VIDEO_EDIT = Surface(names={**_COMMON, "source_video": "video", "video": "video", "audio_setting": "audio_setting",
                            "reference_images": "image1..5", "reference_image": "image1..5"}, fixes=_FIXES)
COST_ESTIMATE = Surface(names={**_COMMON, "mode": "mode", "source_video_duration_s": "source_seconds"},
                        fixes=_FIXES)
COLLECT_JOB = Surface(names={"provider": "provider"}, fixes=_FIXES)


def _count(image: Any) -> int:
    return 0 if image is None else (image.shape[0] if getattr(image, "ndim", 4) == 4 else 1)


def _number(name: str) -> int:
    digits = "".join(ch for ch in name if ch.isdigit())
    return int(digits) if digits else 0


def reference_labels(images: Any, slots: dict[str, Any] | None) -> list[str]:
    """Where each reference came from, in [Image N] order (running.reference_media): the batch input's
    pictures, then the connected sockets in numeric order; a socket holding a batch names each picture."""
    labels = [f"images #{i}" if _count(images) > 1 else "images" for i in range(1, _count(images) + 1)]
    for key in sorted((k for k, v in (slots or {}).items() if v is not None), key=_number):
        n, count = _number(key), _count(slots[key])
        labels.extend(f"image{n} #{i}" if count > 1 else f"image{n}" for i in range(1, count + 1))
    return labels


def for_run(surface: Surface, values: dict[str, Any]) -> Surface:
    """The node's surface refined by what this run connected: each reference by its socket, and the edit
    source by the input that holds it (video, or source_frames)."""
    names = dict(surface.names)
    labels = reference_labels(values.get("images"), values.get("references"))
    names.update({f"reference_images[{i}]": label for i, label in enumerate(labels, 1)})
    if "source_video" in names and values.get("video") is None and values.get("source_frames") is not None:
        names["source_video"] = names["video"] = "source_frames"
    return replace(surface, names=names)


def in_widget_words(surface: Surface) -> Callable:
    """Wrap a node's execute: a HappyHorseError leaves it in the node's words (same exception, its message
    rendered through for_run(surface, inputs)), the rest untouched."""
    def wrap(execute: Callable) -> Callable:
        def reword(exc: HappyHorseError, values: dict[str, Any]) -> None:
            exc.args = (exc.render(for_run(surface, values)),)

        if inspect.iscoroutinefunction(execute):
            @functools.wraps(execute)
            async def run_async(cls: type, **values: Any) -> Any:
                try:
                    return await execute(cls, **values)
                except HappyHorseError as exc:
                    reword(exc, values)
                    raise
            return run_async

        @functools.wraps(execute)
        def run(cls: type, **values: Any) -> Any:
            try:
                return execute(cls, **values)
            except HappyHorseError as exc:
                reword(exc, values)
                raise
        return run
    return wrap
