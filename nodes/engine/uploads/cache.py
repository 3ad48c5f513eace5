"""Which bytes were already uploaded where: content hash + destination -> URL, until shortly before it expires.

Kept in SQLite next to the job ledger so a restarted ComfyUI does not upload the same image again. The table
holds upload URLs (presigned ones carry a signature that lets anyone read that one file until it expires), so
the file is created readable by its owner only and its rows are pruned once expired. No keys are stored: the
destination scope names a bucket or an endpoint, and at most a one-way tag of the account.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from ..ledger import default_home, private_sqlite

SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    scope TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    url TEXT NOT NULL,
    uploaded_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (scope, sha256)
);
"""
# A cached URL is handed out only while this much of its life is left, so the provider can still fetch it
# after queueing: half its lifetime, and never less than REUSE_FLOOR_S.
REUSE_FLOOR_S = 600.0


class UploadCache:
    """path=None: uploads.sqlite3 in the ledger's folder (HAPPYHORSE_HOME); ":memory:" for this process only."""

    def __init__(self, path: str | Path | None = None):
        if path is None:
            path = default_home() / "uploads.sqlite3"
        self.path = str(path)
        if self.path != ":memory:":
            private_sqlite(Path(self.path))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        with self._lock, self._db:
            self._db.executescript(SCHEMA)

    def get(self, scope: str, sha256: str, now: float | None = None) -> str | None:
        now = time.time() if now is None else now
        with self._lock:
            row = self._db.execute("SELECT url, uploaded_at, expires_at FROM uploads WHERE scope=? AND sha256=?",
                                   (scope, sha256)).fetchone()
        if row is None:
            return None
        url, uploaded_at, expires_at = row
        keep = max(REUSE_FLOOR_S, (expires_at - uploaded_at) / 2)
        return url if expires_at - now >= keep else None

    def put(self, scope: str, sha256: str, url: str, expires_at: float, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock, self._db:
            self._db.execute("DELETE FROM uploads WHERE expires_at < ?", (now,))
            self._db.execute("INSERT OR REPLACE INTO uploads VALUES (?,?,?,?,?)",
                             (scope, sha256, url, now, expires_at))

    def close(self) -> None:
        self._db.close()
