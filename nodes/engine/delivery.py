"""Getting a finished video into the user's file: where it goes, the download (retried, size-capped), the full
decode check, and the atomic move into place; or a copy of an earlier identical job's file when reused.

A reader never sees a partial or undecodable file: the download goes to a temporary file beside the target
and is moved into place only once it decodes from start to end.
"""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from .errors import DownloadError
from .http import Transport
from .later import Later
from .ledger import LedgerEntry, LedgerStatus
from .progress import Phase, Watch

if TYPE_CHECKING:
    from .media import FrameSink


def safe_name(text: str, limit: int = 40) -> str:
    """Provider-supplied ids never become paths as-is."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)[:limit] or "job"


def target_path(out_path: str | None, out_dir: str, provider: str, mode: str, task_id: str) -> Path:
    """The user's --out, else a name made from the provider, mode and task id in out_dir."""
    if out_path:
        return Path(out_path)
    return Path(out_dir) / f"happyhorse_{provider}_{mode}_{safe_name(task_id)}.mp4"


async def download_video(transport: Transport, url: str, target: Path, watch: Watch, entry: LedgerEntry, *,
                         task_id: str, later: Later, attempts: int, max_bytes: int, sink: FrameSink | None = None
                         ) -> str:
    """Download url to target, verified; returns the path. After `attempts` failures (or one that retrying
    cannot fix) the job is recorded as download_failed and DownloadError says how to collect it again.
    sink receives the pictures of the verification pass (see media.verify_video)."""
    from .media import MediaError, verify_video      # PyAV loads only when a video is actually fetched

    target.parent.mkdir(parents=True, exist_ok=True)
    last_error = ""
    for attempt in range(attempts):
        watch.update(Phase.DOWNLOADING, detail=f"try {attempt + 1}" if attempt else "")
        fd, part = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                await watch.guard(transport.download(url, fh, max_bytes=max_bytes))
            watch.update(Phase.VERIFYING)
            # Seconds for a long 1080p clip: on a thread, so other jobs and the cancel checks keep running.
            await asyncio.to_thread(verify_video, part, sink)
            # mkstemp made it owner-only; a finished video gets a normal file's permissions (rw-r--r--).
            os.chmod(part, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
            os.replace(part, target)      # atomic: a reader never sees a partial file
            return str(target)
        except (DownloadError, MediaError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            last_error = str(exc) or type(exc).__name__
            if isinstance(exc, DownloadError) and exc.permanent:
                break
        finally:
            if os.path.exists(part):
                os.unlink(part)
        await watch.sleep(min(2.0 ** attempt, 8.0))
    await entry.mark(LedgerStatus.DOWNLOAD_FAILED, error=last_error)
    raise DownloadError(f"Task {task_id} succeeded but its video could not be downloaded intact ({last_error}). "
                        f"Nothing was handed on. {later.collect(task_id, again=True)}"
                        + ("" if later.in_process else " (result URLs usually expire after 24 h)"))


def copy_reused(path: str, out_path: str | None) -> str:
    """An earlier identical job's file, copied to out_path when the user asked for another name."""
    if out_path and os.path.abspath(out_path) != os.path.abspath(path):
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out_path)
        return out_path
    return path
