"""One measured figure: what was measured, our value, the baseline measured beside it in the same run, the goal.

Every benchmark module offers figures(quick) -> list[Figure]; `python -m benchmarks` runs them all.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Figure:
    name: str                     # what a user feels, e.g. "9 reference images 1920x1080 to upload-ready media"
    value: float                  # ours
    unit: str                     # "s", "MB", "x", "polls"
    baseline_name: str = ""       # what ours is compared with, measured side by side in the same run
    baseline: float | None = None
    goal: str = ""                # e.g. "<= 0.2x baseline", "< 1 s"
    met: bool | None = None       # None: no goal, or not decidable in this run
    detail: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return round(self.value / self.baseline, 3)

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}
