"""The paid submit: one POST per job, recorded in the ledger before it is sent and answered after.

Never raced against cancel (its answer - the task id - is needed to cancel the job at the provider or to
collect it later) and never re-sent unless it provably never left this machine (http.Transport.submit).
"""
from __future__ import annotations

import asyncio
import logging
import weakref

from .errors import ProviderError, SubmitRefused, SubmitUncertain
from .http import Transport
from .ledger import LedgerEntry, LedgerStatus
from .protocol import MediaRef
from .request import GenerationRequest

log = logging.getLogger("happyhorse.runner")

# Keyed by the loop object itself (weakly): ComfyUI may run each prompt in a new loop, and a dead loop's id can
# be reused by a new one, which must not inherit the old loop's semaphore.
_slots: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]]" = \
    weakref.WeakKeyDictionary()


def provider_slot(name: str, limit: int) -> asyncio.Semaphore:
    """At most `limit` jobs in flight per provider in this event loop (hosts cap concurrency per account)."""
    per_loop = _slots.setdefault(asyncio.get_running_loop(), {})
    if name not in per_loop:
        per_loop[name] = asyncio.Semaphore(limit)
    return per_loop[name]


async def submit(adapter, transport: Transport, req: GenerationRequest, media: list[MediaRef],
                 entry: LedgerEntry) -> str:
    """POST the job; returns the provider's task id, recorded in the ledger before anything else happens."""
    call = adapter.submit_call(req, media)
    try:
        reply = await transport.submit(call, ok=adapter.submit_ok)
    except SubmitUncertain as exc:
        await entry.mark(LedgerStatus.UNCERTAIN, error=str(exc))
        raise
    except ProviderError as exc:
        # The host answered the submit with an error, or could not be reached at all: no job exists there,
        # which is what lets provider auto offer the job to the next host (routing.FAILOVER_KINDS).
        await entry.mark(LedgerStatus.REJECTED, error=str(exc))
        raise SubmitRefused.from_error(exc, entry.id) from None
    try:
        task_id = adapter.parse_submit(reply)
    except SubmitUncertain as exc:
        await entry.mark(LedgerStatus.UNCERTAIN, error=str(exc))
        raise
    except ProviderError as exc:
        await entry.mark(LedgerStatus.REJECTED, error=str(exc))
        raise
    await entry.mark(LedgerStatus.SUBMITTED, task_id=task_id)
    log.info("%s accepted the job: task %s (ledger %s)", adapter.name, task_id, entry.id)
    return task_id
