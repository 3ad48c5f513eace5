"""How long a job takes at its host, learned from the ledger's finished jobs: what the polling rhythm aims at.

A job's time is forecast per host and shape (version, mode, resolution, duration bucket) as a log-normal:
a median and a spread (sigma, in log space). Each finished job in the ledger gives one sample of its total
time (submit to result) and, when the host said when the job started running, of its run time (running to
result). Samples are read relative to the adapter's own estimate for their shape, so a 3 s and a 15 s job
teach the same thing about a host ("30 % slower than its estimate"); the shape's own newest samples then
refine that. Few samples lean on the wider level (the host's other shapes, then the adapter's estimate with a
wide prior spread), in proportion to how many there are: robust to one odd job, quick to follow a host that
got faster or slower (only the newest samples of a shape count).

The ledger records when a poll noticed a change, and the last poll that had not seen it yet ("after"): the
true moment lies between, so the midpoint is taken. Jobs noticed long after they finished (collected after a
crash) say little and are left out.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Iterable

from .ledger import JobRecord, Ledger
from .request import GenerationRequest

PRIOR_SIGMA = 0.5       # nothing learned yet: hosts say "1-5 min" (DashScope), so a factor of ~2 either way
MIN_SIGMA = 0.01        # never surer than 1 %: a poll's own timing is known no better than that
PRIOR_WEIGHT = 2.0      # the wider level's spread counts like this many samples against a shape's own
SHAPE_SIGMA = 0.25      # how far an unseen shape may sit from the host's typical ratio to the estimate
RECENT = 12             # newest samples of a shape that count
DECAY = 0.7             # each older sample of a shape weighs this much of the next newer one
READ_ROWS = 400         # newest finished jobs of the host that are read
MAX_CENSOR = 0.5        # a sample whose end is known only to within this share of its length is left out
MAD_TO_SIGMA = 1.4826
_STD = statistics.NormalDist()


@dataclass(frozen=True)
class Sample:
    log_ratio: float        # log(seconds taken / the adapter's estimate for the job's shape)
    rel_gap: float          # the window its end (and start) was known in, relative to its length


@dataclass(frozen=True)
class Spread:
    """A log-normal over seconds, optionally shifted: `offset + median * exp(sigma * Z)`."""

    median_s: float
    sigma: float
    samples: int = 0
    offset_s: float = 0.0

    def sf(self, t: float) -> float:
        """P(the job is still unfinished at t)."""
        x = t - self.offset_s
        if x <= 0:
            return 1.0
        return 0.5 * math.erfc(math.log(x / self.median_s) / (self.sigma * math.sqrt(2)))

    def quantile(self, p: float) -> float:
        return self.offset_s + self.median_s * math.exp(self.sigma * _STD.inv_cdf(min(max(p, 1e-12), 1 - 1e-12)))

    def shifted(self, offset_s: float) -> "Spread":
        return Spread(self.median_s, self.sigma, self.samples, offset_s)


@dataclass(frozen=True)
class Mix:
    """A spread trusted with weight 1 - doubt; the rest goes to a wide fallback (the adapter's estimate with
    PRIOR_SIGMA): history can be wrong (the host changed), and then the end is still looked for where a
    job of this shape could plausibly end."""

    main: Spread
    fallback: Spread | None = None
    doubt: float = 0.0

    def sf(self, t: float) -> float:
        if self.fallback is None or self.doubt <= 0:
            return self.main.sf(t)
        return (1 - self.doubt) * self.main.sf(t) + self.doubt * self.fallback.sf(t)

    def mean_after(self, t: float) -> float:
        """E[finish - t | unfinished at t], by integrating the survival function."""
        s0 = self.sf(t)
        ends = [self.main.quantile(0.9999)] + ([self.fallback.quantile(0.9999)] if self.fallback else [])
        end = max(t, *ends)
        if s0 <= 1e-9 or end <= t:
            return 0.0
        steps = 200
        h = (end - t) / steps
        area = 0.5 * (s0 + self.sf(end)) + sum(self.sf(t + i * h) for i in range(1, steps))
        return area * h / s0


@dataclass(frozen=True)
class Forecast:
    """total: submit -> result. run: start of running -> result, known only where the host reports when a job
    started (or the ledger saw it start). fallback: where to look if these are wrong (None: they are the
    fallback, nothing is learned yet)."""

    total: Spread
    run: Spread | None = None
    fallback: Spread | None = None


def bucket(duration_s: float | None) -> str:
    d = duration_s or 5
    return "3-5" if d <= 5 else "6-10" if d <= 10 else "11-15"


def shape_of(version: str, mode: str, resolution: str, duration_s: float | None) -> tuple:
    return (version, mode, resolution, bucket(duration_s))


def request_of(rec: JobRecord) -> GenerationRequest:
    return GenerationRequest(mode=rec.mode, version=rec.version or "1.1", prompt=rec.prompt or "-",
                             resolution=rec.params.get("resolution", "720p"), duration_s=rec.params.get("duration_s"))


def _moment(entry: dict) -> float:
    """When a change happened: exact if the host said so ("began"), else between the last poll that had not
    seen it ("after") and the one that did ("at")."""
    if entry.get("began") is not None:
        return float(entry["began"])
    if entry.get("after") is not None:
        return (float(entry["at"]) + float(entry["after"])) / 2
    return float(entry["at"])


def observed(rec: JobRecord) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """((total seconds, how far off that may be), (run seconds, how far off)) of a finished job, from its
    ledger history; None where unknown or known too loosely."""
    by_status: dict[str, dict] = {}
    for h in rec.history or []:
        by_status.setdefault(str(h.get("status")), h)
    sub, done, run = by_status.get("submitted"), by_status.get("succeeded"), by_status.get("running")
    if sub is None or done is None:
        return None, None
    end, end_gap = _moment(done), _gap(done)
    total = end - float(sub["at"])
    if total <= 0 or end_gap > MAX_CENSOR * total:
        return None, None
    run_s = None
    if run is not None:
        length, gap = end - _moment(run), end_gap + _gap(run)
        if length > 0 and gap <= MAX_CENSOR * length:
            run_s = (length, gap)
    return (total, end_gap), run_s


def _gap(entry: dict) -> float:
    """How wide the window is in which a change happened (0: the host said when)."""
    if entry.get("began") is not None or entry.get("after") is None:
        return 0.0
    return max(0.0, float(entry["at"]) - float(entry["after"]))


class DurationModel:
    """Samples of one host, grouped by shape, as log ratios to the adapter's estimate for each job."""

    def __init__(self, adapter, records: Iterable[JobRecord]):
        self.adapter = adapter
        self.total: dict[tuple, list[Sample]] = {}
        self.run: dict[tuple, list[Sample]] = {}
        for rec in records:         # newest first
            if not rec.mode:
                continue            # a collected job of unknown shape
            total, run = observed(rec)
            if total is None:
                continue
            req = request_of(rec)
            prior = self._prior(req)
            key = shape_of(req.version, req.mode, req.resolution, req.effective_duration_s)
            for groups, (seconds, gap) in ((self.total, total), (self.run, run or (0.0, 0.0))):
                if seconds > 0:
                    groups.setdefault(key, []).append(Sample(math.log(seconds / prior), gap / seconds))

    @classmethod
    def from_ledger(cls, ledger: Ledger | None, adapter) -> "DurationModel":
        """Blocking (SQLite): call it from a thread."""
        return cls(adapter, ledger.finished(adapter.name, READ_ROWS) if ledger is not None else [])

    def _prior(self, req: GenerationRequest) -> float:
        return float(self.adapter.expected_seconds(req))

    def forecast(self, req: GenerationRequest, prior_s: float | None = None) -> Forecast:
        """prior_s: the median to assume while nothing of this host is learned (default: the adapter's
        estimate)."""
        if not self.total:
            return Forecast(Spread(prior_s or self._prior(req), PRIOR_SIGMA))
        base = self._prior(req)         # what the samples were read against
        key = shape_of(req.version, req.mode, req.resolution, req.effective_duration_s)
        return Forecast(_estimate(self.total, key, base), _estimate(self.run, key, base) if self.run else None,
                        fallback=Spread(prior_s or base, PRIOR_SIGMA))


def _weighted_median(values: list[float], weights: list[float]) -> float:
    pairs = sorted(zip(values, weights))
    half, acc = sum(weights) / 2, 0.0
    for value, weight in pairs:
        acc += weight
        if acc >= half:
            return value
    return pairs[-1][0]


def _weights(samples: list[Sample]) -> list[float]:
    """Newest first: each older sample counts DECAY times the one after it."""
    return [DECAY ** i for i in range(len(samples))]


def _n_eff(samples: list[Sample]) -> float:
    w = _weights(samples)
    return sum(w) ** 2 / sum(x * x for x in w) if w else 0.0


def _median(samples: list[Sample]) -> float:
    return _weighted_median([x.log_ratio for x in samples], _weights(samples))


def _robust_sigma(samples: list[Sample]) -> float:
    """The spread of the jobs themselves: the (weighted) MAD's sigma less what the polls' own uncertainty adds
    (a moment known to within a gap g is uniform over it: variance g^2 / 12)."""
    med = _median(samples)
    seen = MAD_TO_SIGMA * _weighted_median([abs(x.log_ratio - med) for x in samples], _weights(samples))
    polls = statistics.mean(x.rel_gap ** 2 for x in samples) / 12
    return math.sqrt(max(MIN_SIGMA ** 2, seen ** 2 - polls))


def _blend(own: float, n: float, wider: float) -> float:
    return (n * own + PRIOR_WEIGHT * wider) / (n + PRIOR_WEIGHT)


def _estimate(groups: dict[tuple, list[Sample]], key: tuple, base_s: float) -> Spread:
    """The shape's spread. Its jobs' spread (sigma): its own newest samples, blended in log space with the
    spread pooled over the host's shapes, itself blended with PRIOR_SIGMA; a few tight samples thus pull a
    wide prior down quickly. Its median: its own samples weighed by their precision against the host's typical
    ratio (an unseen shape may differ from it by SHAPE_SIGMA). The median's own uncertainty is added.
    Newer samples weigh more (DECAY): two jobs in a row that disagree with the older ones move the median."""
    recent = [v[:RECENT] for v in groups.values()]
    within = math.log(PRIOR_SIGMA)
    dof = sum(_n_eff(v) - 1 for v in recent)
    if dof > 0.5:
        # dof > 0.5 means some shape has two samples or more, so there is a spread to pool
        spreads = [_robust_sigma(v) for v in recent if len(v) >= 2]
        pooled = math.exp(statistics.median(math.log(x) for x in spreads))
        within = _blend(math.log(pooled), dof, within)
    own = groups.get(key, [])[:RECENT]
    n = _n_eff(own)
    sigma = math.exp(_blend(math.log(_robust_sigma(own)), n - 1, within) if len(own) >= 2 else within)
    host_mu, up_var = statistics.median(_median(v) for v in recent), SHAPE_SIGMA ** 2
    precision = n / sigma ** 2 + 1 / up_var
    mu = ((n * _median(own) / sigma ** 2 if own else 0.0) + host_mu / up_var) / precision
    return Spread(base_s * math.exp(mu), max(MIN_SIGMA, math.sqrt(sigma ** 2 + 1 / precision)), samples=len(own))
