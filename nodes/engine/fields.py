"""How each surface names the engine's fields to the user, so an error speaks the words the user typed.

The engine reports a bad input as a Violation on a canonical field (`first_frame`, `duration_s`,
`reference_images[2]`, `out_path`, ...) with an optional Fix (what to do about it). A surface - the CLI, the
ComfyUI nodes - is a Surface: its name for each field (`--image`, `--duration`; a node's widget or input name)
and its words for each Fix ("connect one" in ComfyUI, "give it with --image" in the CLI).
`ValidationError.render(surface)` writes the message in those words; `str()` uses the canonical ones.

Fields a surface does not name keep their canonical name; a field with an index (`reference_images[2]`) is
shown as the surface's name for the base field plus the position (`--image #2`), unless the surface names
that indexed field itself (a node names each reference by the socket holding it: `image3`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping


class Fix(Enum):
    """What the user does about a violation; each surface words it in its own terms."""

    SUPPLY = "supply"            # a required input is missing
    REMOVE = "remove"            # an input that does not apply was given
    REMOVE_ALL = "remove_all"    # inputs (plural) that do not apply were given
    LEAVE_EMPTY = "leave_empty"  # an option that does not apply was set
    TURN_OFF = "turn_off"        # a switch that is not available was turned on


# Every field the engine names in a Violation: the request's fields, the upload roles, and the run's options.
# A surface should name each (tests check the CLI does).
FIELDS = ("mode", "version", "prompt", "first_frame", "reference_images", "source_video", "resolution",
          "aspect_ratio", "duration_s", "seed", "watermark", "audio_setting", "source_video_duration_s",
          "reference_image", "video", "provider", "base_url", "out_path", "out_dir", "upload")

# The engine's own words; also what str(ValidationError) says.
CANONICAL_FIXES: Mapping[Fix, str] = {Fix.SUPPLY: "connect one", Fix.REMOVE: "remove it",
                                      Fix.REMOVE_ALL: "remove them", Fix.LEAVE_EMPTY: "leave it empty",
                                      Fix.TURN_OFF: "turn it off"}


@dataclass(frozen=True)
class Surface:
    """One place the user meets the engine: its names for fields, and its wording of fixes ({name} is the
    field's name on this surface)."""

    names: Mapping[str, str] = field(default_factory=dict)
    fixes: Mapping[Fix, str] = field(default_factory=lambda: dict(CANONICAL_FIXES))

    def name(self, field_name: str) -> str:
        if field_name in self.names:             # a surface may name one indexed field itself ("image3")
            return self.names[field_name]
        base, bracket, rest = field_name.partition("[")
        label = self.names.get(base, base)
        if not bracket:
            return label
        if label == base:
            return field_name
        return f"{label} #{rest.rstrip(']')}"

    def fix(self, fix: Fix, field_name: str) -> str:
        return self.fixes.get(fix, CANONICAL_FIXES[fix]).format(name=self.name(field_name))


CANONICAL = Surface()
