"""What the user can do about a job a run stops following (a timeout, a cancel, a failed download), in words
that are true for its host.

A paid host keeps the job, may bill it, and `happyhorse jobs collect` or the Collect node fetches it later.
The simulator charges nothing; the one started inside this process (provider `simulator` without a base URL)
keeps its jobs only as long as the process runs, so "collect it later" would be a promise it cannot keep.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Later:
    provider: str                 # the adapter's name, as `--provider` takes it
    free: bool = False            # the host charges nothing (the simulator)
    in_process: bool = False      # the job lives in this process's own simulator and ends with it
    base_url: str | None = None   # where to collect, when the provider's default would be the wrong place

    @classmethod
    def of(cls, endpoint) -> Later:
        free = endpoint.adapter.name == "simulator"
        return cls(provider=endpoint.adapter.name, free=free, in_process=endpoint.in_process,
                   base_url=endpoint.base_url if free and not endpoint.in_process else None)

    def collect(self, task_id: str, again: bool = False) -> str:
        """The sentence that tells how to get the video later."""
        if self.in_process:
            return ("It ran on the simulator inside this process, which keeps no job once the process ends: "
                    "run the request again instead (the simulator is free).")
        where = f" --base-url {self.base_url}" if self.base_url else ""
        return (f"Collect it {'again' if again else 'later'} with `happyhorse jobs collect {task_id} "
                f"--provider {self.provider}{where}` or the Collect node.")

    def billed(self, clause: str) -> str:
        """clause + " and be billed" where the host bills, e.g. billed("so it may finish")."""
        return clause if self.free else clause + " and be billed"
