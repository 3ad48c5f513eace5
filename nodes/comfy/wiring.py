"""Which of a node's outputs the prompt being run actually uses. Host-neutral (plain prompt dicts).

Decoding a clip to float32 frames costs seconds and gigabytes, its audio a little less; a node whose frames or
audio output is not linked to anything in the prompt must not pay for them. ComfyUI tells a node its prompt
(hidden PROMPT / DYNPROMPT); a link is an input value [source node id, output index].
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .specs import RESULT_OUTPUTS

FRAMES_OUTPUT = next(i for i, o in enumerate(RESULT_OUTPUTS) if o.id == "frames")
AUDIO_OUTPUT = next(i for i, o in enumerate(RESULT_OUTPUTS) if o.id == "audio")


def is_link(value: Any) -> bool:
    """ComfyUI's own test (comfy_execution.graph_utils.is_link): [str node id, int/float output index]."""
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], (int, float)) and not isinstance(value[1], bool))


def linked_outputs(nodes: Iterable[Mapping[str, Any]], node_id: str) -> frozenset[int]:
    """Indices of node_id's outputs that some node in the prompt takes as an input."""
    used: set[int] = set()
    for node in nodes:
        for value in (node.get("inputs") or {}).values():
            if is_link(value) and value[0] == node_id:
                used.add(int(value[1]))
    return frozenset(used)


@dataclass(frozen=True)
class Wanted:
    """The outputs that need decoding. Unknown wiring (no prompt to read) means: decode everything."""

    frames: bool = True
    audio: bool = True

    @property
    def key(self) -> str:
        """A stable word for ComfyUI's cache key: a change in wiring must re-run the node (see fingerprint)."""
        return "+".join(name for name, on in (("frames", self.frames), ("audio", self.audio)) if on) or "none"


EVERYTHING = Wanted()


def wanted_outputs(nodes: Iterable[Mapping[str, Any]] | None, node_id: str | None) -> Wanted:
    if nodes is None or node_id is None:
        return EVERYTHING
    used = linked_outputs(nodes, node_id)
    return Wanted(frames=FRAMES_OUTPUT in used, audio=AUDIO_OUTPUT in used)


def dynprompt_nodes(dynprompt: Any) -> list[Mapping[str, Any]] | None:
    """The nodes of a ComfyUI DynamicPrompt (including nodes added by expansion), or None if there is none."""
    if dynprompt is None:
        return None
    return [dynprompt.get_node(i) for i in dynprompt.all_node_ids()]
