"""ComfyUI services the nodes use: where files go, progress text and bar, and interrupts."""
from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import comfy.model_management
import comfy.utils
import folder_paths
from server import PromptServer

from ..engine.runner import Progress
from .display import progress_fraction, progress_text

T = TypeVar("T")
# After an interrupt, how long one node waits for its siblings to cancel their own jobs at the provider
# before it reports the interruption (ComfyUI then ends the prompt and would cut their cancel calls short).
PEER_CANCEL_WAIT_S = 6.0


def output_dir() -> str:
    """Videos are paid results: they go to the output folder (kept), not temp (wiped at every start)."""
    return os.path.join(folder_paths.get_output_directory(), "happyhorse")


def ledger_path() -> Path:
    return Path(folder_paths.get_user_directory()) / "happyhorse" / "jobs.sqlite3"


class NodeProgress:
    """The runner's on_progress: status / elapsed / ~remaining / price as progress text, plus the bar."""

    def __init__(self, node_id: str | None, provider: str, notes: tuple[str, ...] = ()):
        self.node_id = node_id
        self.provider = provider
        self.notes = notes
        self.bar = comfy.utils.ProgressBar(1000, node_id=node_id)

    def __call__(self, p: Progress) -> None:
        if self.node_id is None:
            return
        PromptServer.instance.send_progress_text(progress_text(p, self.provider, self.notes), self.node_id)
        self.bar.update_absolute(int(progress_fraction(p) * 1000))

    def say(self, text: str) -> None:
        if self.node_id is not None:
            PromptServer.instance.send_progress_text(text, self.node_id)


@dataclass(eq=False)
class _Run:
    task: asyncio.Task | None = None
    interrupted: bool = False


@dataclass
class _Runs:
    """ComfyUI has one interrupt flag and the first node to report the interruption clears it. Runs that are
    in flight side by side must all see it, so the first one to notice marks every run."""

    active: set[_Run] = field(default_factory=set)

    def notice(self, run: _Run) -> bool:
        if not run.interrupted and comfy.model_management.processing_interrupted():
            for r in self.active:
                r.interrupted = True
        return run.interrupted


RUNS = _Runs()


async def run_interruptibly(make: Callable[[Callable[[], bool]], Awaitable[T]]) -> T:
    """Run an engine job (make gets the is_cancelled callback); on interrupt let it cancel at the provider,
    then report a clean interruption to ComfyUI."""
    run = _Run()
    run.task = asyncio.ensure_future(make(lambda: RUNS.notice(run)))
    RUNS.active.add(run)
    try:
        return await run.task
    except BaseException:
        if run.interrupted:
            await _wait_for_peers(run)
            comfy.model_management.throw_exception_if_processing_interrupted()
            raise comfy.model_management.InterruptProcessingException()
        raise
    finally:
        RUNS.active.discard(run)


async def _wait_for_peers(run: _Run) -> None:
    loop = asyncio.get_running_loop()
    peers = [r.task for r in RUNS.active if r is not run and r.interrupted and r.task is not None
             and not r.task.done() and r.task.get_loop() is loop]
    if peers:
        await asyncio.wait(peers, timeout=PEER_CANCEL_WAIT_S)
