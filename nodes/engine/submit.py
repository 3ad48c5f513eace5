"""The paid submit: one POST per job, recorded in the ledger before it is sent and answered after.

Never raced against cancel (its answer - the task id - is needed to cancel the job at the provider or to
collect it later) and never re-sent unless it provably never left this machine (http.Transport.submit).

A host at its limit (too many of the account's jobs at once, or too many submits a second) answers the submit
with 429 before taking the job: nothing exists there and nothing is billed, so the submit waits and is sent
again (`busy_wait_s`). No client-side cap stands in for a host's limit: the limit is per account, across
machines and programs, so only the host knows when it is reached.
"""
from __future__ import annotations

import logging
import time

from .errors import JobCancelled, ProviderError, SubmitRefused, SubmitUncertain
from .http import Transport
from .ledger import LedgerEntry, LedgerStatus
from .progress import Phase, Watch
from .protocol import MediaRef
from .request import GenerationRequest

log = logging.getLogger("happyhorse.runner")

BUSY_RETRY_MAX_S = 15.0      # between submits to a host at its limit, when it names no wait (Retry-After)


async def submit(adapter, transport: Transport, req: GenerationRequest, media: list[MediaRef],
                 entry: LedgerEntry, watch: Watch, busy_wait_s: float | None = None) -> tuple[str, float]:
    """POST the job; returns the provider's task id, recorded in the ledger before anything else happens, and
    when the host's answer came (time.monotonic(): the job's age is counted from there).

    busy_wait_s: how long to keep sending it again while the host answers 429 (None: until it takes the job or
    the user cancels; 0: refuse at once, e.g. so provider auto can offer the job to the next host)."""
    call = adapter.submit_call(req, media)
    started, tries = time.monotonic(), 0
    while True:
        try:
            reply = await transport.submit(call, ok=adapter.submit_ok)
            answered = time.monotonic()
            break
        except SubmitUncertain as exc:
            await entry.mark(LedgerStatus.UNCERTAIN, error=str(exc))
            raise
        except ProviderError as exc:
            waited = time.monotonic() - started
            if exc.kind == "rate_limit" and (busy_wait_s is None or waited < busy_wait_s):
                tries += 1
                await _wait_for_host(adapter, exc, entry, watch, tries)
                continue
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
    await entry.mark(LedgerStatus.SUBMITTED, task_id=task_id, **({"error": None} if tries else {}))
    log.info("%s accepted the job: task %s (ledger %s)", adapter.name, task_id, entry.id)
    return task_id, answered


async def _wait_for_host(adapter, exc: ProviderError, entry: LedgerEntry, watch: Watch, tries: int) -> None:
    """Wait before sending a refused (429) submit again. The record stays 'submitting' and is touched, so an
    identical run elsewhere keeps waiting for it rather than taking it for a submit that died."""
    delay = min(exc.retry_after, 60.0) if exc.retry_after is not None else min(BUSY_RETRY_MAX_S, 2.0 ** tries)
    name = adapter.caps.display_name
    note = f"{name} is at its limit for this account (HTTP 429); sending again in {delay:.0f} s, nothing is billed " \
           f"until it takes the job"
    log.info("%s: %s", adapter.name, note)
    watch.update(Phase.SUBMITTING, detail=note)
    await entry.mark(error=f"{name} answered 429 (at its limit); waiting to send again")
    try:
        await watch.sleep(delay)
    except JobCancelled:
        await entry.mark(LedgerStatus.REJECTED, error=f"cancelled while {name} was at its limit; nothing was "
                                                      f"submitted")
        raise JobCancelled(f"Cancelled while waiting for {name} to take the job; nothing was submitted or billed.",
                           task_id=None) from None
