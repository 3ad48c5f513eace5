"""The ledger's jobs as a person sees them (the ComfyUI panel), and cancelling a job nobody is following.

Host-neutral. What leaves this module for a page is chosen field by field: never the endpoint (base URL: it is
configuration), the result URL (often signed), the input URLs, the fingerprint or the request's own settings
beyond what the panel shows. Provider adapters are passed in, so the engine stays independent of providers/.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Mapping

import aiohttp

from .errors import HappyHorseError, ProviderError
from .http import Transport
from .ledger import JobRecord, Ledger, LedgerStatus as S
from .request import GenerationRequest

# Ledger status -> what the panel calls it.
STATES = {
    S.SUBMITTING: "submitting", S.SUBMITTED: "queued", S.QUEUED: "queued", S.RUNNING: "running",
    S.SUCCEEDED: "downloading", S.DONE: "done", S.FAILED: "failed", S.REJECTED: "failed",
    S.CANCELED: "cancelled", S.UNKNOWN: "failed", S.UNCERTAIN: "uncertain",
    S.TIMED_OUT: "stopped", S.ABANDONED: "stopped", S.DOWNLOAD_FAILED: "stopped",
}
ACTIVE = {"submitting", "queued", "running", "downloading"}
# Jobs whose video can still be fetched with a Collect Job node (the host keeps results about a day).
COLLECTABLE = {"queued", "running", "downloading", "stopped", "uncertain", "done"}
PROMPT_CHARS = 160
STATE_NOTES = {
    "uncertain": "the submit got no answer: it may be running and billed; check the provider's dashboard",
    "stopped": "not followed any more; collect it to get the video",
}


def _running_since(rec: JobRecord) -> float | None:
    return next((h["at"] for h in rec.history if h.get("status") == S.RUNNING), None)


def expected_seconds(rec: JobRecord, adapter: Any) -> float | None:
    if adapter is None or not rec.mode:
        return None
    req = GenerationRequest(mode=rec.mode, version=rec.version or "1.1",
                            resolution=rec.params.get("resolution", "720p"), duration_s=rec.params.get("duration_s"))
    try:
        return float(adapter.expected_seconds(req))
    except (HappyHorseError, ValueError, TypeError, OSError):
        return None


def video_file(rec: JobRecord, output_dir: str | Path) -> Path | None:
    """The job's video, only if it is a file the ledger names inside output_dir (links resolved)."""
    if not rec.local_path:
        return None
    try:
        root = Path(output_dir).resolve()
        path = Path(rec.local_path).resolve()
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(root) or path.suffix.lower() != ".mp4" or not path.is_file():
        return None
    return path


def job_view(rec: JobRecord, adapters: Mapping[str, Any], output_dir: str | Path,
             now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    adapter = adapters.get(rec.provider)
    caps = getattr(adapter, "caps", None)
    state = STATES.get(rec.status, rec.status)
    started = rec.created_at
    elapsed = (now if state in ACTIVE else rec.updated_at) - started
    expected = expected_seconds(rec, adapter) if state in ACTIVE else None
    remaining = max(0.0, expected - (now - started)) if expected is not None else None
    prompt = rec.prompt if rec.mode else ""
    return {
        "id": rec.id,
        "task_id": rec.task_id,
        "provider": rec.provider,
        "provider_name": caps.display_name if caps else rec.provider,
        "mode": rec.mode or "collect",
        "version": rec.version,
        "resolution": rec.params.get("resolution"),
        "aspect_ratio": rec.params.get("aspect_ratio"),
        "duration_s": rec.params.get("duration_s"),
        "prompt": prompt if len(prompt) <= PROMPT_CHARS else prompt[:PROMPT_CHARS - 1] + "…",
        "state": state,
        "status": str(getattr(rec.status, "value", rec.status)),
        "reason": rec.error if state in ("failed", "stopped", "uncertain", "cancelled") else None,
        "note": STATE_NOTES.get(state),
        "created_at": rec.created_at,
        "updated_at": rec.updated_at,
        "running_since": _running_since(rec),
        "elapsed_s": round(max(0.0, elapsed), 1),
        "remaining_s": None if remaining is None else round(remaining, 1),
        "cost_usd": rec.cost_usd,
        "estimate_usd": getattr(rec, "estimate_usd", None),
        "has_video": video_file(rec, output_dir) is not None,
        "can_collect": bool(rec.task_id) and state in COLLECTABLE,
        "can_cancel": bool(rec.task_id) and state in ("queued", "running") and bool(caps and caps.supports_cancel),
    }


def list_jobs(ledger: Ledger, adapters: Mapping[str, Any], output_dir: str | Path, limit: int = 50,
              now: float | None = None) -> list[dict[str, Any]]:
    """Newest first."""
    return [job_view(r, adapters, output_dir, now) for r in ledger.recent(limit)]


async def cancel_unfollowed(rec: JobRecord, endpoint: Any, ledger: Ledger) -> str:
    """Cancel at the provider a job that no run in this process follows (e.g. one left by a restart).

    endpoint: the provider's Endpoint (adapter, base URL, key). Records 'canceled' only when the host accepted.
    Raises HappyHorseError with the reason when the host has no cancel or refuses it.
    """
    adapter = endpoint.adapter
    call = adapter.cancel_call(rec.task_id) if adapter.caps.supports_cancel and rec.task_id else None
    if call is None:
        raise HappyHorseError(f"{adapter.caps.display_name}'s API has no cancel: the job runs to its end.")
    transport = Transport(endpoint.base_url, adapter.auth_headers(endpoint.key), error_mapper=adapter.map_error)
    try:
        async with transport:
            await asyncio.wait_for(transport.call(call), timeout=15)
    except ProviderError as exc:
        raise HappyHorseError(f"{adapter.caps.display_name} refused to cancel task {rec.task_id} (it cancels only "
                              f"queued jobs; this one may have started and will be billed): {exc}") from None
    except (aiohttp.ClientError, asyncio.TimeoutError):
        raise HappyHorseError(f"Could not reach {adapter.caps.display_name} to cancel task {rec.task_id}; "
                              f"nothing was changed. Try again.") from None
    await asyncio.to_thread(ledger.update, rec.id, status=S.CANCELED, error="cancelled from the HappyHorse panel")
    return f"Task {rec.task_id} cancelled at {adapter.caps.display_name} (not billed)."
