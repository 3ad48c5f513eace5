"""The generation nodes (text, image, references, video edit) and Collect Job: what ComfyUI loads at start-up.

Only the schemas are built then; what a node does when it runs lives in running.py, imported on the first run,
so the engine (runner, ledger, uploads, media decoding) costs ComfyUI's start nothing.
"""
from __future__ import annotations

from typing import Any

from comfy_api.latest import io

from . import specs
from .schema import build_schema
from .wiring import Wanted, dynprompt_nodes, wanted_outputs
from .words import (COLLECT_JOB, IMAGE2VIDEO, REFERENCE2VIDEO, TEXT2VIDEO, VIDEO_EDIT,
                    in_widget_words)


class ResultNode(io.ComfyNode):
    """A node with the six result outputs. Frames and audio are decoded only when the prompt links them."""

    @classmethod
    def wanted(cls) -> Wanted:
        return wanted_outputs(dynprompt_nodes(cls.hidden.dynprompt), cls.hidden.unique_id)

    @classmethod
    def fingerprint_inputs(cls, **_inputs: Any) -> str:
        # ComfyUI reuses a cached result while this value and the inputs stay the same; the cached result has
        # frames / audio only if they were linked when the node ran, so linking them later must re-run the node.
        # A re-run costs nothing at the host: the ledger (or, with force_new, running._last_video) gives the
        # same video.
        return wanted_outputs(dynprompt_nodes(_prompt_being_prepared()), cls.hidden.unique_id).key


def _prompt_being_prepared() -> Any:
    """The DynamicPrompt ComfyUI is about to run. fingerprint_inputs is not given it (ComfyUI passes no prompt
    while computing cache keys), but execution.py resets the progress registry with it just before."""
    from comfy_execution.progress import get_progress_state
    from comfy_execution.utils import get_executing_context

    registry, context = get_progress_state(), get_executing_context()
    if context is None or registry.prompt_id != context.prompt_id:
        return None                                          # cannot tell: decode everything
    return registry.dynprompt


class Text2Video(ResultNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return build_schema(specs.text2video())

    @classmethod
    @in_widget_words(TEXT2VIDEO)
    async def execute(cls, **values: Any) -> io.NodeOutput:
        from .running import text2video
        return await text2video(cls, values)


class Image2Video(ResultNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return build_schema(specs.image2video())

    @classmethod
    @in_widget_words(IMAGE2VIDEO)
    async def execute(cls, **values: Any) -> io.NodeOutput:
        from .running import image2video
        return await image2video(cls, values)


class Reference2Video(ResultNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return build_schema(specs.reference2video())

    @classmethod
    @in_widget_words(REFERENCE2VIDEO)
    async def execute(cls, **values: Any) -> io.NodeOutput:
        from .running import reference2video
        return await reference2video(cls, values)


class VideoEdit(ResultNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return build_schema(specs.video_edit())

    @classmethod
    @in_widget_words(VIDEO_EDIT)
    async def execute(cls, **values: Any) -> io.NodeOutput:
        from .running import video_edit
        return await video_edit(cls, values)


class CollectJob(ResultNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return build_schema(specs.collect_job())

    @classmethod
    @in_widget_words(COLLECT_JOB)
    async def execute(cls, **values: Any) -> io.NodeOutput:
        from .running import collect_job
        return await collect_job(cls, values)
