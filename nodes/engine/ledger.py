"""A local SQLite journal (WAL) of every paid job, so a job is never lost and can be collected again.

The task id is written the moment the provider returns it, before polling starts. Nothing secret is stored:
no keys, no headers, and signed URLs are kept only as the provider returned them for the result (needed to
collect) - never the request's Authorization.
"""
from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError
from .protocol import JobState, TextEnum
from .redact import redact_url
from .request import GenerationRequest

HOME_ENV = "HAPPYHORSE_HOME"

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    provider TEXT NOT NULL,
    base_url TEXT NOT NULL,
    version TEXT NOT NULL,
    mode TEXT NOT NULL,
    prompt TEXT NOT NULL,
    params TEXT NOT NULL,
    inputs TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    task_id TEXT,
    status TEXT NOT NULL,
    history TEXT NOT NULL,
    video_url TEXT,
    local_path TEXT,
    billed_seconds REAL,
    cost_usd REAL,
    error TEXT,
    size_bytes INTEGER,
    sha256 TEXT,
    usage TEXT,
    estimate_usd REAL
);
CREATE INDEX IF NOT EXISTS jobs_task ON jobs(provider, task_id);
CREATE INDEX IF NOT EXISTS jobs_fp ON jobs(fingerprint);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created_at);
"""
# Columns added after the first release: a ledger made before them gets them on open (values NULL).
ADDED_COLUMNS = (("size_bytes", "INTEGER"), ("sha256", "TEXT"), ("usage", "TEXT"), ("estimate_usd", "REAL"))
JSON_FIELDS = ("params", "inputs", "history", "usage")


class LedgerStatus(TextEnum):
    """A recorded job's status: the provider's states (JobState) plus what happened on this side."""

    SUBMITTING = "submitting"            # recorded right before the paid POST; no answer yet
    SUBMITTED = "submitted"              # the provider returned a task id
    QUEUED = JobState.QUEUED.value
    RUNNING = JobState.RUNNING.value
    SUCCEEDED = JobState.SUCCEEDED.value
    FAILED = JobState.FAILED.value
    CANCELED = JobState.CANCELED.value
    UNKNOWN = JobState.UNKNOWN.value
    REJECTED = "rejected"                # the provider refused the submit (nothing billed)
    UNCERTAIN = "uncertain"              # the submit broke off after it was sent: it may be billed
    ABANDONED = "abandoned"              # the user stopped waiting; the job may still run
    TIMED_OUT = "timed_out"              # we stopped waiting; the job may still run
    DOWNLOAD_FAILED = "download_failed"  # succeeded, but its video could not be fetched intact
    DONE = "done"                        # the video is saved locally

    @classmethod
    def of(cls, state: JobState) -> "LedgerStatus":
        return cls(JobState(state).value)


# Statuses of a paid job we can still follow to its video instead of paying again.
ATTACHABLE = frozenset({LedgerStatus.SUBMITTED, LedgerStatus.QUEUED, LedgerStatus.RUNNING, LedgerStatus.SUCCEEDED,
                        LedgerStatus.ABANDONED, LedgerStatus.TIMED_OUT, LedgerStatus.DOWNLOAD_FAILED,
                        LedgerStatus.DONE})


def default_home() -> Path:
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "happyhorse"


@dataclass
class JobRecord:
    id: str
    created_at: float
    updated_at: float
    provider: str
    base_url: str
    version: str
    mode: str
    prompt: str
    params: dict
    inputs: list
    fingerprint: str
    task_id: str | None
    status: LedgerStatus
    history: list
    video_url: str | None
    local_path: str | None
    billed_seconds: float | None
    cost_usd: float | None
    error: str | None
    size_bytes: int | None = None       # of the saved video (local_path), with its sha256: reuse checks both
    sha256: str | None = None
    usage: dict | None = None           # the host's usage record for the finished job, as it sent it
    estimate_usd: float | None = None   # the price estimate when submitted (budgets count jobs in flight)

    def __post_init__(self) -> None:
        self.status = LedgerStatus(self.status)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def private_sqlite(path: Path) -> None:
    """Make a SQLite file owner-only before it is opened: its folder 0700 when we create it, the file and any
    -wal / -shm 0600 (SQLite creates those with the main file's mode). They hold prompts and signed URLs."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
        os.chmod(path.parent, 0o700)          # mkdir's mode is filtered by the umask; be exact
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if name.exists():
            os.chmod(name, 0o600)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


class Ledger:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_home() / "jobs.sqlite3"
        self._lock = threading.Lock()
        try:
            private_sqlite(self.path)
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)
                have = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
                for name, kind in ADDED_COLUMNS:
                    if name not in have:
                        db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
        except (OSError, sqlite3.Error) as exc:
            blocker = next((p for p in (self.path.parent, *self.path.parent.parents) if p.exists()), None)
            reason = (f"{blocker} is a file, not a folder" if blocker is not None and not blocker.is_dir()
                      else getattr(exc, "strerror", None) or str(exc))
            from_env = path is None and bool(os.environ.get(HOME_ENV))
            where = f"{HOME_ENV}={os.environ[HOME_ENV]}" if from_env else str(self.path.parent)
            fix = (f"point {HOME_ENV} at a folder you can write to" if from_env
                   else f"make {self.path.parent} a folder you can write to"
                   + (f" or set {HOME_ENV} to one" if path is None else ""))
            raise ConfigError(f"The job ledger cannot be kept in {where} ({reason}); {fix}. Nothing was sent.") \
                from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        return db

    def _insert(self, admit: Callable[["LedgerView"], None] | None = None, **row: Any) -> None:
        with self._lock, self._connect() as db:
            if admit is not None:
                # The database's write lock, held from the check to the new record: no other process (a CLI
                # batch beside ComfyUI) records a job in between, so two cannot both spend the last of a budget.
                db.execute("BEGIN IMMEDIATE")
                admit(LedgerView(db))
            db.execute(f"INSERT INTO jobs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                       tuple(row.values()))

    def create(self, req: GenerationRequest, provider: str, base_url: str, estimate_usd: float | None = None,
               admit: Callable[["LedgerView"], None] | None = None) -> str:
        """base_url is stored (and matched) without userinfo or query, like every URL the ledger keeps.
        admit(view), when given, may refuse the job by raising; it sees the ledger as no other writer can change
        it until this record is in (budget.SpendGuard.check)."""
        base_url = redact_url(base_url)
        job_id = uuid.uuid4().hex
        now = time.time()
        params = {"resolution": req.resolution, "aspect_ratio": req.effective_aspect_ratio,
                  "duration_s": req.effective_duration_s, "seed": req.seed, "watermark": req.watermark,
                  "audio_setting": req.audio_setting}
        inputs = [{"role": role, "sha256": m.sha256, "url": m.url if m.url and not m.url.startswith("data:") else None,
                   "bytes": len(m.data) if m.data is not None else None} for role, m in req.media()]
        self._insert(admit, id=job_id, created_at=now, updated_at=now, provider=provider, base_url=base_url,
                     version=req.version, mode=req.mode, prompt=req.prompt, params=json.dumps(params),
                     inputs=json.dumps(inputs), fingerprint=req.fingerprint(), status=LedgerStatus.SUBMITTING.value,
                     estimate_usd=estimate_usd,
                     history=json.dumps([{"status": LedgerStatus.SUBMITTING.value, "at": now}]))
        return job_id

    def create_collect(self, provider: str, base_url: str, task_id: str) -> str:
        """A record for a job started elsewhere that we are asked to collect."""
        base_url = redact_url(base_url)
        job_id = uuid.uuid4().hex
        now = time.time()
        self._insert(id=job_id, created_at=now, updated_at=now, provider=provider, base_url=base_url, version="",
                     mode="", prompt="", params="{}", inputs="[]", fingerprint="", task_id=task_id,
                     status=LedgerStatus.SUBMITTED.value, history=json.dumps([{"status": "collect", "at": now}]))
        return job_id

    def update(self, job_id: str, *, status: LedgerStatus | None = None, noted: dict | None = None,
               **fields: Any) -> None:
        """noted: kept with a status change in the history (when polls saw it: "after", "began")."""
        allowed = {"task_id", "video_url", "local_path", "billed_seconds", "cost_usd", "error", "size_bytes",
                   "sha256", "usage"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"unknown ledger fields {bad}")
        if "usage" in fields:
            fields["usage"] = json.dumps(fields["usage"]) if fields["usage"] is not None else None
        now = time.time()
        with self._lock, self._connect() as db:
            row = db.execute("SELECT status, history FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                raise KeyError(job_id)
            history = json.loads(row["history"])
            status = LedgerStatus(status).value if status is not None else row["status"]
            if status != row["status"]:
                history.append({"status": status, "at": now, **(noted or {})})
            sets = ["updated_at=?", "status=?", "history=?"] + [f"{k}=?" for k in fields]
            args = [now, status, json.dumps(history), *fields.values(), job_id]
            db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id=?", args)

    def get(self, job_id: str) -> JobRecord | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _record(row) if row else None

    def find_task(self, task_id: str, provider: str | None = None) -> JobRecord | None:
        sql = "SELECT * FROM jobs WHERE task_id=?" + (" AND provider=?" if provider else "")
        args = (task_id, provider) if provider else (task_id,)
        with self._connect() as db:
            row = db.execute(sql + " ORDER BY created_at DESC LIMIT 1", args).fetchone()
        return _record(row) if row else None

    def find_fingerprint(self, fingerprint: str, provider: str, base_url: str | None = None) -> JobRecord | None:
        """The newest job for an identical request at the same provider (and endpoint: another base URL is
        another account or region, whose task ids mean nothing here)."""
        sql = "SELECT * FROM jobs WHERE fingerprint=? AND provider=?" + (" AND base_url=?" if base_url else "")
        args = (fingerprint, provider, redact_url(base_url)) if base_url else (fingerprint, provider)
        with self._connect() as db:
            row = db.execute(sql + " ORDER BY created_at DESC LIMIT 1", args).fetchone()
        return _record(row) if row else None

    def since(self, created_after: float) -> list[JobRecord]:
        """Every job recorded at or after this moment (epoch seconds), oldest first."""
        with self._connect() as db:
            return _since(db, created_after)

    def finished(self, provider: str, limit: int) -> list[JobRecord]:
        """The newest jobs of a provider that reached a result, newest first (what durations.py learns from)."""
        sql = ("SELECT * FROM jobs WHERE provider=? AND status IN (?, ?, ?) AND mode!='' "
               "ORDER BY created_at DESC LIMIT ?")
        args = (provider, LedgerStatus.DONE.value, LedgerStatus.SUCCEEDED.value, LedgerStatus.DOWNLOAD_FAILED.value,
                limit)
        with self._connect() as db:
            return [_record(r) for r in db.execute(sql, args).fetchall()]

    def recent(self, limit: int = 20, status: LedgerStatus | None = None) -> list[JobRecord]:
        sql = "SELECT * FROM jobs" + (" WHERE status=?" if status else "") + " ORDER BY created_at DESC LIMIT ?"
        args = (LedgerStatus(status).value, limit) if status else (limit,)
        with self._connect() as db:
            return [_record(r) for r in db.execute(sql, args).fetchall()]


def _record(row: sqlite3.Row) -> JobRecord:
    d = dict(row)
    for k in JSON_FIELDS:
        d[k] = json.loads(d[k]) if d[k] is not None else None
    return JobRecord(**d)


def _since(db: sqlite3.Connection, created_after: float) -> list[JobRecord]:
    rows = db.execute("SELECT * FROM jobs WHERE created_at>=? ORDER BY created_at", (created_after,))
    return [_record(r) for r in rows.fetchall()]


class LedgerView:
    """The ledger as read inside Ledger.create's write transaction (what admit() gets)."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def since(self, created_after: float) -> list[JobRecord]:
        return _since(self._db, created_after)


class LedgerEntry:
    """One job's record as a run sees it: every write goes here, and a run without a ledger writes nothing."""

    def __init__(self, ledger: Ledger | None, job_id: str | None):
        self.ledger = ledger
        self.id = job_id if ledger is not None else None

    async def mark(self, status: LedgerStatus | None = None, noted: dict | None = None, **fields: Any) -> None:
        # SQLite may wait up to its timeout for another process's lock: never on the event loop.
        if self.ledger is not None and self.id is not None:
            await asyncio.to_thread(self.ledger.update, self.id, status=status, noted=noted, **fields)
