"""What one run shows while it works (typed phases, a progress line a second) and how it notices a cancel.

Every wait of a run goes through its Watch, so a cancel request is seen within CANCEL_CHECK_S wherever the
run is: uploading, polling, between download attempts.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable

from .errors import JobCancelled
from .pricing import Estimate
from .protocol import TextEnum

CANCEL_CHECK_S = 0.2
TICK_S = 1.0


class Phase(TextEnum):
    """Where a run is, in the order a run passes through them (REUSED, ATTACHING and REFETCHING replace
    uploading and submitting)."""

    STARTING = "starting"
    VALIDATING = "validating"
    UPLOADING = "uploading"
    SUBMITTING = "submitting"
    REUSED = "reused"            # an identical earlier job's video is handed back; nothing submitted
    ATTACHING = "attaching"      # following an identical job already paid for
    REFETCHING = "refetching"    # fetching an identical finished job's result again (its file is gone)
    QUEUED = "queued"
    RUNNING = "running"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    CANCELLING = "cancelling"
    DONE = "done"

    @property
    def at_provider(self) -> bool:
        """The provider is working on it: the time left can be estimated."""
        return self in (Phase.QUEUED, Phase.RUNNING)


@dataclass(frozen=True)
class Progress:
    phase: Phase
    elapsed_s: float
    expected_s: float | None = None
    task_id: str | None = None
    estimate: Estimate | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "phase", Phase(self.phase))

    @property
    def remaining_s(self) -> float | None:
        if self.expected_s is None or not self.phase.at_provider:
            return None
        return max(0.0, self.expected_s - self.elapsed_s)

    def text(self) -> str:
        parts = [self.phase.value, f"{self.elapsed_s:.0f}s elapsed"]
        if self.remaining_s is not None:
            parts.append(f"~{self.remaining_s:.0f}s left" if self.remaining_s > 0 else "any moment now")
        if self.estimate is not None:
            parts.append(self.estimate.summary())
        if self.task_id:
            parts.append(f"task {self.task_id}")
        if self.detail:
            parts.append(self.detail)
        return " | ".join(parts)


class Watch:
    """Progress reporting (ticked once a second) and cancellation checks for one run."""

    def __init__(self, on_progress: Callable[[Progress], None] | None, is_cancelled: Callable[[], bool] | None):
        self.on_progress = on_progress
        self.is_cancelled = is_cancelled or (lambda: False)
        self.started = time.monotonic()
        self.phase = Phase.STARTING
        self.detail = ""
        self.task_id: str | None = None
        self.estimate: Estimate | None = None
        self.expected: float | None = None
        self.note = ""              # shown with every progress line once set (e.g. re-attached)
        self._ticker: asyncio.Task | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def cancelled(self) -> bool:
        return bool(self.is_cancelled())

    def update(self, phase: Phase, detail: str = "") -> None:
        self.phase, self.detail = Phase(phase), detail
        self.emit()

    def emit(self) -> None:
        if self.on_progress is not None:
            detail = "; ".join(x for x in (self.detail, self.note) if x)
            self.on_progress(Progress(self.phase, self.elapsed(), self.expected, self.task_id, self.estimate,
                                      detail))

    def start_ticker(self) -> None:
        async def tick() -> None:
            while True:
                await asyncio.sleep(TICK_S)
                self.emit()
        if self.on_progress is not None:
            self._ticker = asyncio.create_task(tick())

    async def stop_ticker(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            try:
                await self._ticker
            except asyncio.CancelledError:
                pass

    def raise_if_cancelled(self) -> None:
        """Before the paid submit: a cancel here costs nothing."""
        if self.cancelled():
            raise JobCancelled("Cancelled before anything was submitted; nothing was billed.", task_id=None)

    async def sleep(self, seconds: float, on_cancel: Callable[[], Any] | None = None) -> None:
        end = time.monotonic() + seconds
        while True:
            if self.cancelled():
                if on_cancel is not None:
                    await on_cancel()
                raise JobCancelled("Cancelled.", task_id=self.task_id)
            left = end - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(CANCEL_CHECK_S, left))

    async def guard(self, coro, on_cancel: Callable[[], Any] | None = None):
        """Await coro, but give up on it within CANCEL_CHECK_S of a cancel request."""
        task = asyncio.ensure_future(coro)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=CANCEL_CHECK_S)
                if done:
                    return task.result()
                if self.cancelled():
                    task.cancel()
                    if on_cancel is not None:
                        await on_cancel()
                    raise JobCancelled("Cancelled.", task_id=self.task_id)
        finally:
            if not task.done():
                task.cancel()
