"""ComfyUI services the nodes use: where files go, progress text and bar, job events for the panel, interrupts."""
from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import comfy.model_management
import comfy.utils
import folder_paths
from server import PromptServer

from ..engine.progress import Progress
from ..providers.registry import ADAPTERS
from .display import progress_fraction, progress_text

T = TypeVar("T")
log = logging.getLogger("happyhorse")
# After an interrupt, how long one node waits for its siblings to cancel their own jobs at the provider
# before it reports the interruption (ComfyUI then ends the prompt and would cut their cancel calls short).
PEER_CANCEL_WAIT_S = 6.0
# The websocket event the HappyHorse panel (web/happyhorse.js) listens to: {"job": <engine.jobs.job_view>}.
JOB_EVENT = "happyhorse.job"


def output_dir() -> str:
    """Videos are paid results: they go to the output folder (kept), not temp (wiped at every start)."""
    return os.path.join(folder_paths.get_output_directory(), "happyhorse")


def ledger_path() -> Path:
    return Path(folder_paths.get_user_directory()) / "happyhorse" / "jobs.sqlite3"


# One thread for job events: the ledger is read off the event loop, and events leave in the order they were asked.
_events = ThreadPoolExecutor(max_workers=1, thread_name_prefix="happyhorse-events")


def _send_job_event(provider: str, task_id: str) -> None:
    from ..engine.jobs import job_view
    from ..engine.ledger import Ledger

    try:
        rec = Ledger(ledger_path()).find_task(task_id, provider)
        if rec is not None:
            PromptServer.instance.send_sync(JOB_EVENT, {"job": job_view(rec, ADAPTERS, output_dir())})
    except Exception as exc:          # an event is a courtesy: never let it disturb the run
        log.warning("HappyHorse: could not tell the page about task %s (%s)", task_id, exc)


def push_job_event(provider: str, task_id: str) -> None:
    """Tell every open page how this job stands now (read back from the ledger: the one record of it)."""
    _events.submit(_send_job_event, provider, task_id)


class NodeProgress:
    """The runner's on_progress: status / elapsed / ~remaining / price as progress text, plus the bar; and, once
    the job has a task id, a job event for the panel at each change of phase (the panel ticks the clock itself)."""

    def __init__(self, node_id: str | None, provider: str, notes: tuple[str, ...] = (), provider_id: str = ""):
        self.node_id = node_id
        self.provider = provider
        self.provider_id = provider_id
        self.notes = notes
        self.bar = comfy.utils.ProgressBar(1000, node_id=node_id)
        self.run: _Run | None = None
        self.pushed: tuple[str, str] | None = None

    def __call__(self, p: Progress) -> None:
        if p.task_id:
            if self.run is not None:
                self.run.task = (self.provider_id, p.task_id)
            if self.pushed != (p.task_id, p.phase):
                self.pushed = (p.task_id, p.phase)
                push_job_event(self.provider_id, p.task_id)
        if self.node_id is None:
            return
        PromptServer.instance.send_progress_text(progress_text(p, self.provider, self.notes), self.node_id)
        try:
            self.bar.update_absolute(int(progress_fraction(p) * 1000))
        except comfy.model_management.InterruptProcessingException:
            # ComfyUI's progress hook reports an interrupt by raising it (and clearing its flag). Raised here it
            # would end the run without cancelling its paid job: hand it to the runs instead, which cancel their
            # jobs at the provider at their next check and then report the interruption.
            RUNS.interrupt_all()

    def finished(self) -> None:
        """The run ended (done, failed, cancelled): the ledger has its last word; tell the pages."""
        if self.pushed is not None:
            push_job_event(self.provider_id, self.pushed[0])

    def say(self, text: str) -> None:
        if self.node_id is not None:
            PromptServer.instance.send_progress_text(text, self.node_id)


@dataclass(eq=False)
class _Run:
    future: asyncio.Future | None = None
    interrupted: bool = False
    task: tuple[str, str] | None = None     # (provider, task id) once submitted
    cancel_requested: bool = False          # asked from the panel


@dataclass
class _Runs:
    """ComfyUI has one interrupt flag and the first node to report the interruption clears it. Runs that are
    in flight side by side must all see it, so the first one to notice marks every run."""

    active: set[_Run] = field(default_factory=set)

    def notice(self, run: _Run) -> bool:
        if not run.interrupted and comfy.model_management.processing_interrupted():
            self.interrupt_all()
        return run.interrupted

    def interrupt_all(self) -> None:
        for r in self.active:
            r.interrupted = True

    def cancel_task(self, provider: str, task_id: str) -> bool:
        """Ask the run following this task to stop and cancel it at the provider; False if none follows it."""
        runs = [r for r in self.active if r.task == (provider, task_id)]
        for r in runs:
            r.cancel_requested = True
        return bool(runs)


RUNS = _Runs()


async def run_interruptibly(make: Callable[[Callable[[], bool]], Awaitable[T]],
                            progress: NodeProgress | None = None) -> T:
    """Run an engine job (make gets the is_cancelled callback); on interrupt let it cancel at the provider,
    then report a clean interruption to ComfyUI. A cancel asked from the panel stops it the same way, and the
    node then fails with the runner's account of it."""
    run = _Run()
    if progress is not None:
        progress.run = run
    run.future = asyncio.ensure_future(make(lambda: RUNS.notice(run) or run.cancel_requested))
    RUNS.active.add(run)
    try:
        return await run.future
    except BaseException:
        if run.interrupted:
            await _wait_for_peers(run)
            comfy.model_management.throw_exception_if_processing_interrupted()
            raise comfy.model_management.InterruptProcessingException()
        raise
    finally:
        RUNS.active.discard(run)
        if progress is not None:
            progress.finished()


async def _wait_for_peers(run: _Run) -> None:
    loop = asyncio.get_running_loop()
    peers = [r.future for r in RUNS.active if r is not run and r.interrupted and r.future is not None
             and not r.future.done() and r.future.get_loop() is loop]
    if peers:
        await asyncio.wait(peers, timeout=PEER_CANCEL_WAIT_S)
