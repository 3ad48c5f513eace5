"""Never lose an uncertain submit: find its job in the host's own task list instead of guessing.

A submit that broke off after it was sent (or was answered 2xx without a task id) may have been accepted and
billed. Where the host documents a list of the account's tasks (DashScope), look there for a task of the same
model created around the moment we sent ours, that we do not already know under another record, and whose
prompt - where the host reports it - is ours:
  exactly one: that is our job; record its task id and follow it (nothing is sent again);
  none: say so - it was most likely never accepted - and offer --new / force_new;
  several: name them and let the user pick (collect one), never guess.
Hosts without a task list keep the refusal: the user checks the dashboard.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from .errors import ProviderError, SubmitUncertain
from .http import Transport
from .ledger import Ledger
from .protocol import ListedTask
from .request import GenerationRequest

log = logging.getLogger("happyhorse.runner")

# A task counts as ours when the host created it within this window around our POST (clocks differ a little,
# and a submit can take up to the transport's 60 s timeout plus retries).
BEFORE_S = 120.0
AFTER_S = 300.0
MAX_PAGES = 5
MAX_DETAILS = 25                # candidates whose prompt is checked (one GET each); the rest cannot be ruled out


@dataclass(frozen=True)
class Search:
    """What the task list said about one uncertain submit."""

    found: str | None                   # our job's task id, when exactly one task matches
    candidates: tuple[str, ...]         # every task that might be ours
    since: float
    until: float

    def refusal(self, uncertain: SubmitUncertain, display_name: str) -> SubmitUncertain:
        """The uncertain submit's own message, followed by what the task list showed."""
        window = f"{_clock(self.since)}-{_clock(self.until)}"
        if not self.candidates:
            return SubmitUncertain(
                f"{uncertain} {display_name}'s task list was checked: it lists no task with this model created "
                f"{window}, so the job was most likely never accepted. To submit it now, force a new generation "
                f"(--new in the CLI, force_new on the node).")
        return SubmitUncertain(
            f"{uncertain} {display_name}'s task list has {len(self.candidates)} tasks with this model created "
            f"{window} that could be it: {', '.join(self.candidates)}. Collect the right one with "
            f"`happyhorse jobs collect <task-id>` (or the Collect node); to submit anyway, force a new generation "
            f"(--new in the CLI, force_new on the node).")


async def search(adapter, transport: Transport, req: GenerationRequest, sent_at: float, ledger: Ledger | None,
                 own_record: str | None) -> Search:
    """Look for the job of the submit sent at `sent_at` (epoch seconds) for req."""
    since, until = sent_at - BEFORE_S, sent_at + AFTER_S
    listed: list[ListedTask] = []
    for page in range(1, MAX_PAGES + 1):
        call = adapter.list_tasks_call(req, since, min(until, time.time() + 60), page)
        tasks, more = adapter.parse_task_list(await transport.call(call))
        listed.extend(tasks)
        if not more:
            break
    candidates = []
    for task in listed:
        if task.created_at is not None and not since <= task.created_at <= until:
            continue
        known = None if ledger is None else await asyncio.to_thread(ledger.find_task, task.task_id, adapter.name)
        if known is not None and known.id != own_record:
            continue                    # another run's job, already accounted for
        candidates.append(task.task_id)
    matching = []
    for task_id in candidates[:MAX_DETAILS]:
        try:
            status = adapter.parse_poll(await transport.call(adapter.poll_call(task_id)))
        except ProviderError:
            matching.append(task_id)    # cannot rule it out
            continue
        if status.prompt is None or status.prompt == req.prompt:
            matching.append(task_id)
    matching += candidates[MAX_DETAILS:]
    log.info("%s task list: %d listed, %d candidate(s) for the uncertain submit", adapter.name, len(listed),
             len(matching))
    return Search(found=matching[0] if len(matching) == 1 else None, candidates=tuple(matching), since=since,
                  until=until)


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))
