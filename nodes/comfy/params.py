"""Node inputs (as ComfyUI hands them to execute) -> the engine's canonical request. Host-neutral.

A DynamicCombo arrives as a nested dict: {"provider": "simulator", "version": {"version": "1.1",
"resolution": "720p", "aspect_ratio": "16:9", "duration": 5}}. A workflow saved with a provider or version
this installation does not have arrives without it; that becomes a clear error instead of a TypeError.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..engine.errors import HappyHorseError
from ..engine.request import GenerationRequest, MediaInput
from ..engine.routing import AUTO as AUTO_PROVIDER
from ..engine.uploads import AUTO
from ..providers.registry import ADAPTERS
from .specs import KEEP_SOURCE, providers_for, versions_for


@dataclass(frozen=True)
class Choice:
    provider: str
    version: str
    resolution: str
    aspect_ratio: str | None
    duration_s: int | None
    upload: str = AUTO


@dataclass(frozen=True)
class Built:
    provider: str
    request: GenerationRequest
    upload: str = AUTO
    notes: tuple[str, ...] = field(default_factory=tuple)


def read_choice(value: Any, mode: str) -> Choice:
    """Unpack the provider -> version DynamicCombo for this mode."""
    offered = [*providers_for(mode), AUTO_PROVIDER]
    if not isinstance(value, dict) or value.get("provider") not in offered:
        got = value.get("provider") if isinstance(value, dict) else value
        which = f"Provider {got!r} is" if got else "The provider saved in this workflow is"
        raise HappyHorseError(f"{which} not available in this installation; pick one of {', '.join(offered)} "
                              f"in the node (the workflow may come from a newer version of the pack).")
    name = value["provider"]
    version = value.get("version")
    versions = versions_for(name, mode) if name in offered else []
    if not isinstance(version, dict) or version.get("version") not in versions:
        got = version.get("version") if isinstance(version, dict) else version
        raise HappyHorseError(f"Version {got!r} is not offered by {name} for this node; pick one of "
                              f"{', '.join(versions) or 'none'} (re-select the version in the node).")
    duration = version.get("duration")
    return Choice(provider=name, version=version["version"], resolution=str(version.get("resolution", "720p")),
                  aspect_ratio=None if version.get("aspect_ratio") == KEEP_SOURCE else version.get("aspect_ratio"),
                  duration_s=int(duration) if duration is not None else None, upload=str(value.get("upload", AUTO)))


def build_request(mode: str, provider: Any, *, prompt: str = "", seed: int | None = None, watermark: bool = False,
                  first_frame: MediaInput | None = None, references: tuple[MediaInput, ...] = (),
                  source_video: MediaInput | None = None, audio_setting: str | None = None) -> Built:
    choice = read_choice(provider, mode)
    notes: list[str] = []
    # With auto the host is not known yet: the ranking drops the seed for hosts without one (the widget always
    # holds a number, so it cannot mean "only hosts with seeds").
    caps = ADAPTERS[choice.provider].caps if choice.provider != AUTO_PROVIDER else None
    if seed is not None and caps is not None and not caps.takes_seed(choice.version):
        notes.append(f"{caps.display_name} takes no seed; the seed widget is ignored")
        seed = None
    req = GenerationRequest(mode=mode, prompt=prompt or "", version=choice.version, first_frame=first_frame,
                            reference_images=tuple(references), source_video=source_video,
                            resolution=choice.resolution, aspect_ratio=choice.aspect_ratio,
                            duration_s=choice.duration_s, seed=seed, watermark=bool(watermark),
                            audio_setting=audio_setting if mode == "edit" else None)
    return Built(provider=choice.provider, request=req, upload=choice.upload, notes=tuple(notes))


def slot_order(slots: dict[str, Any] | None) -> list[Any]:
    """Autogrow sockets in their numeric order (image1, image2, ... image10), skipping empty ones."""
    if not slots:
        return []
    def number(name: str) -> int:
        digits = "".join(ch for ch in name if ch.isdigit())
        return int(digits) if digits else 0
    return [slots[k] for k in sorted(slots, key=number) if slots[k] is not None]
