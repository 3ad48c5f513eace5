"""What a running node shows: the runner's Progress as a few lines of text and a 0..1 bar. Host-neutral."""
from __future__ import annotations

from ..engine.pricing import Estimate
from ..engine.progress import Phase, Progress

_PHASE_WORDS = {Phase.STARTING: "starting", Phase.VALIDATING: "checking inputs", Phase.UPLOADING: "uploading media",
                Phase.SUBMITTING: "submitting", Phase.QUEUED: "queued at the provider", Phase.RUNNING: "generating",
                Phase.DOWNLOADING: "downloading", Phase.VERIFYING: "checking the video",
                Phase.CANCELLING: "cancelling", Phase.DONE: "done",
                Phase.REUSED: "reusing the video of an identical earlier job",
                Phase.ATTACHING: "following the identical job already running",
                Phase.REFETCHING: "fetching the result of an identical earlier job again"}


def price_text(est: Estimate | None) -> str:
    if est is None:
        return "unknown"
    if est.usd == 0:
        return "free"
    return est.summary()


def progress_text(p: Progress, provider: str, notes: tuple[str, ...] = ()) -> str:
    status = _PHASE_WORDS[p.phase]
    elapsed = f"{p.elapsed_s:.0f}s"
    remaining = p.remaining_s
    if remaining is not None:
        elapsed += f" (~{remaining:.0f}s remaining)" if remaining >= 1 else " (any moment now)"
    lines = [f"Status: {status} ({provider})", f"Time elapsed: {elapsed}", f"Price: {price_text(p.estimate)}"]
    if p.task_id:
        lines.append(f"Task: {p.task_id}")
    if p.detail and p.phase != Phase.DONE:
        lines.append(p.detail)
    lines.extend(notes)
    return "\n".join(lines)


def progress_fraction(p: Progress) -> float:
    """Time-based while the provider works (hosts rarely report progress); fixed steps around it."""
    if p.phase == Phase.DONE:
        return 1.0
    if p.phase in (Phase.DOWNLOADING, Phase.VERIFYING):
        return 0.95
    if p.phase.at_provider and p.expected_s:
        return 0.05 + 0.85 * min(1.0, p.elapsed_s / p.expected_s)
    return 0.02
