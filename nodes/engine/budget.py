"""Spend guard: a per-run limit (`--max-usd`, the node's `max_usd`) and a daily / monthly budget from the config.

    [budget]
    daily_usd = 5.0       # 0 or absent: no daily limit
    monthly_usd = 50.0

What counts as spent in a period (local calendar day / month, by when the job was submitted), from the ledger:
  - a finished job: its reported cost, else its estimate;
  - a job still in flight or whose fate is open (submitting, submitted, queued, running, uncertain, timed out,
    abandoned, download failed): its estimate - it may yet be billed;
  - a job the host refused, failed or cancelled: nothing (hosts do not bill those);
  - a job with no known price: counted apart (`unknown`), never guessed.
A job that reuses or attaches to an earlier one adds no record, so it costs nothing here.

`spend_summary()` is the one place that reads the budget config and adds up the ledger: the CLI (`happyhorse
spend`) and the web panel both call it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from .config import Settings
from .errors import BudgetExceeded, ConfigError
from .ledger import JobRecord, Ledger, LedgerStatus, LedgerView
from .pricing import Estimate

# The host refused it, the job failed or was cancelled, or the host does not know the task: not billed.
NOT_BILLED = frozenset({LedgerStatus.REJECTED, LedgerStatus.FAILED, LedgerStatus.CANCELED, LedgerStatus.UNKNOWN})


@dataclass(frozen=True)
class BudgetLimits:
    daily_usd: float | None = None
    monthly_usd: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> "BudgetLimits":
        settings = settings or Settings.load()
        section = settings.section("budget")
        where = f"[budget] in {settings.file_path}" if settings.file_path else "[budget]"
        return cls(daily_usd=_limit(section, "daily_usd", where), monthly_usd=_limit(section, "monthly_usd", where))


def _limit(section: dict, key: str, where: str) -> float | None:
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: {key} = {value!r} is not a limit; use a number of USD >= 0 (0 = no limit)")
    return float(value) or None


def job_spend(rec: JobRecord) -> float | None:
    """USD this job has cost or may yet cost; None when its price is unknown."""
    if rec.status in NOT_BILLED:
        return 0.0
    if rec.status == LedgerStatus.DONE and rec.cost_usd is not None:
        return rec.cost_usd
    return rec.estimate_usd


@dataclass
class ProviderSpend:
    usd: float = 0.0                 # known costs and estimates
    jobs: int = 0                    # jobs that count (billed or may be)
    unknown_jobs: int = 0            # of which the price is unknown (not in usd)


@dataclass
class PeriodSpend:
    name: str                        # "today" | "this month"
    since: float                     # epoch seconds, local start of the period
    limit_usd: float | None
    by_provider: dict[str, ProviderSpend] = field(default_factory=dict)

    @property
    def usd(self) -> float:
        return round(sum(p.usd for p in self.by_provider.values()), 4)

    @property
    def unknown_jobs(self) -> int:
        return sum(p.unknown_jobs for p in self.by_provider.values())

    def add(self, rec: JobRecord) -> None:
        spend = job_spend(rec)
        if spend == 0.0 and rec.status in NOT_BILLED:
            return
        p = self.by_provider.setdefault(rec.provider, ProviderSpend())
        p.jobs += 1
        if spend is None:
            p.unknown_jobs += 1
        else:
            p.usd += spend

    def as_dict(self) -> dict:
        return {"period": self.name, "since": self.since, "usd": self.usd, "limit_usd": self.limit_usd,
                "unknown_price_jobs": self.unknown_jobs,
                "by_provider": {k: {"usd": round(v.usd, 4), "jobs": v.jobs, "unknown_price_jobs": v.unknown_jobs}
                                for k, v in sorted(self.by_provider.items())}}


@dataclass
class SpendSummary:
    today: PeriodSpend
    month: PeriodSpend

    def as_dict(self) -> dict:
        return {"today": self.today.as_dict(), "month": self.month.as_dict()}


def period_starts(now: float) -> tuple[float, float]:
    """Local midnight today and local midnight on the 1st of this month."""
    t = time.localtime(now)
    day = time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))
    month = time.mktime((t.tm_year, t.tm_mon, 1, 0, 0, 0, 0, 0, -1))
    return day, month


def spend_summary(ledger: Ledger | LedgerView | None = None, limits: BudgetLimits | None = None,
                  now: float | None = None) -> SpendSummary:
    """Today's and this month's spend per provider, with the configured limits. Reads the config and the ledger."""
    ledger = ledger or Ledger()
    limits = limits if limits is not None else BudgetLimits.from_settings()
    now = time.time() if now is None else now
    day_start, month_start = period_starts(now)
    today = PeriodSpend("today", day_start, limits.daily_usd)
    month = PeriodSpend("this month", month_start, limits.monthly_usd)
    for rec in ledger.since(min(day_start, month_start)):
        if rec.created_at >= day_start:
            today.add(rec)
        if rec.created_at >= month_start:
            month.add(rec)
    return SpendSummary(today, month)


@dataclass(frozen=True)
class SpendGuard:
    """The limits one run (or one batch) must keep: max_usd for this job, and the budget periods."""

    max_usd: float | None = None
    limits: BudgetLimits = BudgetLimits()

    @classmethod
    def load(cls, max_usd: float | None = None, settings: Settings | None = None) -> "SpendGuard":
        if max_usd is not None and (not math.isfinite(max_usd) or max_usd < 0):
            raise BudgetExceeded(f"max_usd {max_usd!r} is not a limit; use a number of USD >= 0 (0 = no limit)")
        return cls(max_usd=max_usd or None, limits=BudgetLimits.from_settings(settings))

    @property
    def active(self) -> bool:
        return any(x is not None for x in (self.max_usd, self.limits.daily_usd, self.limits.monthly_usd))

    def check(self, est: Estimate, ledger: Ledger | LedgerView | None, what: str = "this job") -> None:
        """Raise BudgetExceeded unless `est` fits the per-run limit and what is left of each budget period."""
        why = f"{est.provider} publishes no USD price for it ({est.note or 'price unknown'})"
        self.check_usd(est.usd, ledger, what, unknown_why=why)

    def check_usd(self, usd: float | None, ledger: Ledger | LedgerView | None, what: str,
                  unknown_why: str = "") -> None:
        if not self.active or usd == 0:
            return
        if usd is None:
            limit = ("max_usd" if self.max_usd is not None else
                     "[budget] daily_usd" if self.limits.daily_usd is not None else "[budget] monthly_usd")
            raise BudgetExceeded(f"Refused before sending: the price of {what} is unknown ({unknown_why}), so it "
                                 f"cannot be checked against {limit}. Choose a provider with a known price, or "
                                 f"lift the limit.")
        if self.max_usd is not None and usd > self.max_usd + 1e-9:
            raise BudgetExceeded(f"Refused before sending: {what} is estimated at {usd:.2f} USD, over the "
                                 f"max_usd limit of {self.max_usd:.2f} USD (--max-usd / the node's max_usd). "
                                 f"Raise the limit, or make it shorter or at a lower resolution.")
        if ledger is None or (self.limits.daily_usd is None and self.limits.monthly_usd is None):
            return
        summary = spend_summary(ledger, self.limits)
        for period, key in ((summary.today, "daily_usd"), (summary.month, "monthly_usd")):
            if period.limit_usd is not None and period.usd + usd > period.limit_usd + 1e-9:
                unknown = (f" (plus {period.unknown_jobs} job(s) of unknown price, not counted)"
                           if period.unknown_jobs else "")
                raise BudgetExceeded(
                    f"Refused before sending: {period.usd:.2f} USD is spent or in flight {period.name}{unknown}; "
                    f"{what} would add {usd:.2f} USD, over the {key} budget of {period.limit_usd:.2f} USD "
                    f"([budget] {key} in the HappyHorse config). See `happyhorse spend`.")
