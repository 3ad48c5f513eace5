"""Provider `auto`: rank the hosts that can take a request, run it at the best, fail over without paying twice.

Ranking (deterministic for one configuration): among the hosts with a configured key that accept the whole
request (mode, version, resolution, aspect ratio, duration, reference count, seed / watermark if set, and a way
to receive its files), the cheapest known USD price first; hosts whose price is unknown after every priced one;
ties by the config's preference list, then by name:

    [routing]
    prefer = ["dashscope", "reapi"]

The built-in simulator is never chosen automatically (it is free, so it would always win): name it to use it.

Failover: when the chosen host refuses the job in a way that proves no job exists there (errors.SubmitRefused
of a kind in FAILOVER_KINDS: it could not be reached, the key or credits were refused, or it kept answering
429 / 5xx to the submit), the next host in the ranking gets the job. Never after an uncertain submit (the host
may have the job) and never once a task id came back; every attempt stays in the ledger with why it moved on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

from .config import Settings
from .errors import ConfigError, HappyHorseError, SubmitRefused, ValidationError
from .pricing import Estimate
from .request import MODE_TITLES, VERSIONS, GenerationRequest

AUTO = "auto"
# Never chosen by `auto`: a free local stand-in, not a host.
NOT_ROUTED = ("simulator",)
# Refusals that prove the host holds no job: unreachable, key refused, out of credits, still 429 / 5xx after
# the transport's retries. Not bad_request (the next host would refuse it too) and never protocol (a reply we
# could not read may carry a job).
FAILOVER_KINDS = frozenset({"auth", "credits", "rate_limit", "server"})


@dataclass(frozen=True)
class Candidate:
    provider: str
    display_name: str
    preference: int                         # position in [routing] prefer; len(prefer) when not listed
    request: GenerationRequest | None = None
    estimate: Estimate | None = None
    endpoint: object | None = None          # providers.registry.Endpoint (holds the key as a Secret)
    excluded: str = ""                      # why this host cannot take the request; "" = it can

    @property
    def usd(self) -> float | None:
        return None if self.estimate is None or self.estimate.usd is None else round(self.estimate.usd, 6)

    def price_text(self) -> str:
        if self.estimate is None:
            return "-"
        return f"{self.estimate.usd:.2f} USD" if self.estimate.usd is not None else "price unknown"

    def sort_key(self) -> tuple:
        return (self.usd is None, self.usd or 0.0, self.preference, self.provider)


@dataclass(frozen=True)
class RoutePlan:
    mode: str
    version: str
    ranked: tuple[Candidate, ...]           # hosts that can take it, best first
    excluded: tuple[Candidate, ...]         # the others, with the reason
    prefer: tuple[str, ...] = ()

    @property
    def chosen(self) -> Candidate:
        return self.ranked[0]

    @property
    def runner_up(self) -> Candidate | None:
        return self.ranked[1] if len(self.ranked) > 1 else None

    def require(self) -> "RoutePlan":
        """This plan, or an error listing why each host was left out when none can take the request."""
        if not self.ranked:
            raise HappyHorseError(
                f"No provider can take this {MODE_TITLES.get(self.mode, self.mode)} request on HappyHorse "
                f"{self.version} with provider auto:\n" + "\n".join(
                    f"  - {c.provider}: {c.excluded}" for c in self.excluded if c.provider not in NOT_ROUTED))
        return self

    def why(self) -> str:
        """One line: which host, why, and the runner-up."""
        c, r = self.chosen, self.runner_up
        n = len(self.ranked)
        pool = f"{n} host{'s' if n != 1 else ''} with a key that take{'s' if n == 1 else ''} this request"
        if c.usd is not None:
            reason = f"cheapest known price ({c.price_text()}) of {pool}"
        else:
            reason = f"no host among {pool} publishes a USD price for it"
        if r is not None and r.usd == c.usd:
            if c.preference != r.preference:
                reason += "; tie broken by [routing] prefer"
            else:
                reason += "; tie broken by name (set [routing] prefer to choose)"
        runner = f"runner-up: {r.provider} ({r.price_text()})" if r is not None else "no runner-up"
        return f"auto chose {c.provider}: {reason}; {runner}"

    def table(self) -> list[str]:
        """The whole ranking, each host with its price or the reason it was left out."""
        lines = [f"{i}. {c.provider:<10} {c.price_text()}" + ("  <- chosen" if i == 1 else "")
                 for i, c in enumerate(self.ranked, 1)]
        lines += [f"-  {c.provider:<10} excluded: {c.excluded}" + _price_note(c) for c in self.excluded]
        return lines

    def as_dict(self) -> dict:
        return {"mode": self.mode, "version": self.version, "prefer": list(self.prefer),
                "chosen": self.chosen.provider if self.ranked else None, "why": self.why() if self.ranked else "",
                "ranking": [{"provider": c.provider, "usd": c.usd,
                             "price": c.estimate.as_dict() if c.estimate else None} for c in self.ranked],
                "excluded": [{"provider": c.provider, "reason": c.excluded} for c in self.excluded]}


def _price_note(c: Candidate) -> str:
    if c.estimate is None:
        return ""
    return f" (would cost {c.price_text()})" if c.usd is not None else " (price unknown there)"


def default_version(mode: str) -> str:
    """For `auto` without a version: the newest version any host offers for the mode (edit exists on 1.0 only)."""
    from ..providers.registry import ADAPTERS

    offered = [v for v in sorted(VERSIONS, reverse=True)
               if any(a.caps.supports(v, mode) for n, a in ADAPTERS.items() if n not in NOT_ROUTED)]
    return offered[0] if offered else VERSIONS[-1]


def preference_list(settings: Settings) -> tuple[str, ...]:
    from ..providers.registry import ADAPTERS

    prefer = settings.section("routing").get("prefer", [])
    where = f"[routing] prefer in {settings.file_path}" if settings.file_path else "[routing] prefer"
    if not isinstance(prefer, list) or not all(isinstance(p, str) for p in prefer):
        raise ConfigError(f"{where} must be a list of provider names, e.g. prefer = [\"dashscope\", \"reapi\"]")
    unknown = [p for p in prefer if p not in ADAPTERS]
    if unknown:
        raise ConfigError(f"{where} names {', '.join(map(repr, unknown))}, which is not a provider; "
                          f"use {', '.join(n for n in ADAPTERS if n not in NOT_ROUTED)}")
    return tuple(dict.fromkeys(prefer))


def plan_route(req: GenerationRequest, settings: Settings | None = None, *, seed_is_optional: bool = False,
               base_urls: dict[str, str] | None = None) -> RoutePlan:
    """Rank every host for this request. seed_is_optional: a node's seed widget always holds a number, so hosts
    without seeds still qualify there (the seed is dropped for them); a seed the user typed in the CLI is not."""
    from ..providers.registry import ADAPTERS, all_caps, configured, resolve_endpoint
    from .runner import check_request

    settings = settings or Settings.load()
    prefer = preference_list(settings)
    ranked: list[Candidate] = []
    excluded: list[Candidate] = []
    for name, adapter in ADAPTERS.items():
        base = Candidate(name, adapter.caps.display_name, prefer.index(name) if name in prefer else len(prefer))
        if name in NOT_ROUTED:
            excluded.append(_with(base, excluded="a free local stand-in, never chosen by auto (name it to use it)"))
            continue
        try:      # as configured: a DashScope region's prices and store
            adapter = configured(name, settings, (base_urls or {}).get(name))[0]
        except ConfigError as exc:
            excluded.append(_with(base, excluded=str(exc)))
            continue
        cand_req = req
        if seed_is_optional and req.seed is not None and not adapter.caps.takes_seed(req.version):
            cand_req = req.with_(seed=None)
        try:
            cand_req, est = check_request(cand_req, adapter, all_caps())
        except ValidationError as exc:
            excluded.append(_with(base, excluded="; ".join(str(v) for v in exc.violations)))
            continue
        except ConfigError as exc:        # e.g. local files but no way to get them to this host
            excluded.append(_with(base, excluded=str(exc)))
            continue
        try:
            endpoint = resolve_endpoint(name, settings, base_url=(base_urls or {}).get(name))
        except ConfigError:
            excluded.append(_with(base, estimate=est, excluded=f"no API key (set {adapter.caps.key_env})"))
            continue
        ranked.append(_with(base, request=cand_req, estimate=est, endpoint=endpoint))
    ranked.sort(key=Candidate.sort_key)
    excluded.sort(key=lambda c: (c.estimate is None, c.provider))
    return RoutePlan(req.mode, req.version, tuple(ranked), tuple(excluded), prefer)


def _with(c: Candidate, **changes) -> Candidate:
    from dataclasses import replace

    return replace(c, **changes)


def can_fail_over(exc: BaseException) -> bool:
    """True only when the error proves the host holds no job for this request."""
    return isinstance(exc, SubmitRefused) and exc.kind in FAILOVER_KINDS


async def run_routed(plan: RoutePlan, run_at: Callable, *, on_event: Callable[[str], None] = lambda s: None,
                     ledger=None, force_new: bool = False,
                     on_attempt: Callable[[Candidate], None] = lambda c: None):
    """Run at the chosen host; on a refusal that proves no job exists, move down the ranking.

    run_at(candidate, last) -> awaitable JobResult: one attempt at one host (the caller's JobRunner.run); last
    says no host is left to fail over to.
    If the ledger holds an earlier identical request at any ranked host, only that host is tried (its result is
    reused, its job attached to, or an uncertain submit refused) so nothing is ever paid twice across hosts.
    """
    order = list(plan.ranked)
    earlier = None if force_new else _earlier_host(order, ledger)
    if earlier is not None:
        on_event(f"an identical request went to {earlier.provider} before; staying there (never paid twice)")
        order = [earlier]
    for i, cand in enumerate(order):
        on_attempt(cand)
        try:
            result = await run_at(cand, i + 1 == len(order))
        except SubmitRefused as exc:
            nxt = order[i + 1] if i + 1 < len(order) else None
            if not can_fail_over(exc) or nxt is None:
                raise
            why = f"{cand.provider} refused the job ({exc.kind}: {exc}); nothing exists there"
            if ledger is not None and exc.ledger_id:
                ledger.update(exc.ledger_id, error=f"{exc} -> failed over to {nxt.provider} (provider auto)")
            on_event(f"{why}; failing over to {nxt.provider} ({nxt.price_text()})")
            continue
        result.extra["routing"] = plan.why() if cand is plan.chosen else \
            f"{plan.why()}; failed over to {cand.provider}"
        return result
    raise AssertionError("unreachable: the last attempt either returns or raises")


async def run_auto(plan: RoutePlan, opts, *, ledger=None, on_progress=None, is_cancelled=None,
                   on_event: Callable[[str], None] = lambda s: None,
                   on_attempt: Callable[[Candidate], None] = lambda c: None):
    """run_routed with one JobRunner per attempt: what the CLI, the nodes and batches call for provider auto."""
    from ..providers.registry import all_caps
    from .runner import JobRunner

    def attempt(cand: Candidate, last: bool):
        runner = JobRunner(cand.endpoint, ledger=ledger, all_caps=all_caps())
        # A host at its limit (429 to the submit) is left for the next one; the last one is waited on.
        here = opts if last else replace(opts, busy_wait_s=0.0)
        return runner.run(cand.request, here, on_progress=on_progress, is_cancelled=is_cancelled)

    return await run_routed(plan, attempt, on_event=on_event, ledger=ledger, force_new=opts.force_new,
                            on_attempt=on_attempt)


def _earlier_host(order: list[Candidate], ledger) -> Candidate | None:
    if ledger is None:
        return None
    from .budget import NOT_BILLED
    from .dedupe import RESULT_LIFETIME_S

    for cand in order:
        rec = ledger.find_fingerprint(cand.request.fingerprint(), cand.provider, cand.endpoint.base_url)
        if rec is not None and rec.status not in NOT_BILLED and time.time() - rec.created_at <= RESULT_LIFETIME_S:
            return cand
    return None
