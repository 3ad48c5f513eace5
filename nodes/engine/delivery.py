"""Getting a finished video into the user's file: where it goes (checked writable before anything is paid), the
download (retried, size-capped, hashed as it streams), the full decode check, and the atomic move into place;
or a copy of an earlier identical job's file when reused, once it is shown to be that very file.

A reader never sees a partial or undecodable file: the download goes to a temporary file beside the target
and is moved into place only once it decodes from start to end. Every saved video is described by its
absolute path, size and sha256 (SavedVideo), which the ledger keeps.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from .errors import DownloadError, ValidationError, Violation
from .http import Transport
from .later import Later
from .ledger import LedgerEntry, LedgerStatus
from .progress import Phase, Watch

if TYPE_CHECKING:
    from .media import FrameSink


@dataclass(frozen=True)
class SavedVideo:
    path: str            # absolute
    size_bytes: int
    sha256: str


def safe_name(text: str, limit: int = 40) -> str:
    """Provider-supplied ids never become paths as-is."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)[:limit] or "job"


def target_path(out_path: str | None, out_dir: str, provider: str, mode: str, task_id: str) -> Path:
    """Absolute: the user's out_path (a file, or an existing folder to save into), else a name made from the
    provider, mode and task id in out_dir."""
    name = f"happyhorse_{provider}_{mode}_{safe_name(task_id)}.mp4"
    if out_path:
        path = Path(out_path).expanduser()
        return Path(os.path.abspath(path / name if path.is_dir() else path))
    return Path(os.path.abspath(Path(out_dir).expanduser() / name))


def check_writable(out_path: str | None, out_dir: str) -> None:
    """Refuse, before anything is paid, an output location the video could not be saved to: the folder is
    made if missing, and a file is actually created and removed there (permissions, read-only disks, a file
    standing where a folder should be)."""
    field, value = ("out_path", out_path) if out_path else ("out_dir", out_dir)
    path = Path(value).expanduser()
    if out_path and path.exists() and not path.is_dir() and not path.is_file():
        raise ValidationError([Violation(field, f"{value} exists and is not a regular file; name a file or a "
                                                f"folder to save the video in")])
    folder = Path(os.path.abspath(path if (not out_path or path.is_dir()) else path.parent))
    blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
    try:
        if blocker is not None and not blocker.is_dir():
            raise NotADirectoryError(0, f"{blocker} is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".happyhorse-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValidationError([Violation(field, f"the video cannot be saved in {folder} ({reason}); choose a "
                                                f"folder you can write to")]) from None


class _Hashing:
    """Passes writes through to a file while counting and hashing them: no second read of the video."""

    def __init__(self, fh):
        self.fh = fh
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.size += len(data)
        self.digest.update(data)
        return self.fh.write(data)


async def download_video(transport: Transport, url: str, target: Path, watch: Watch, entry: LedgerEntry, *,
                         task_id: str, later: Later, attempts: int, max_bytes: int, sink: FrameSink | None = None
                         ) -> SavedVideo:
    """Download url to target, verified. After `attempts` failures (or one that retrying cannot fix) the job
    is recorded as download_failed and DownloadError says how to collect it again.
    sink receives the pictures of the verification pass (see media.verify_video)."""
    from .media import MediaError, verify_video      # PyAV loads only when a video is actually fetched

    target.parent.mkdir(parents=True, exist_ok=True)
    last_error = ""
    for attempt in range(attempts):
        watch.update(Phase.DOWNLOADING, detail=f"try {attempt + 1}" if attempt else "")
        fd, part = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                hashing = _Hashing(fh)
                await watch.guard(transport.download(url, hashing, max_bytes=max_bytes))
            watch.update(Phase.VERIFYING)
            # Seconds for a long 1080p clip: on a thread, so other jobs and the cancel checks keep running.
            await asyncio.to_thread(verify_video, part, sink)
            # mkstemp made it owner-only; a finished video gets a normal file's permissions (rw-r--r--).
            os.chmod(part, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
            os.replace(part, target)      # atomic: a reader never sees a partial file
            return SavedVideo(str(target), hashing.size, hashing.digest.hexdigest())
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


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def still_saved(path: str | None, size_bytes: int | None, sha256: str | None) -> bool:
    """The file saved earlier is still there, unchanged (same size and sha256). A record from before sizes and
    hashes were kept cannot be shown to match, so it does not."""
    if not path or size_bytes is None or not sha256 or not os.path.isabs(path):
        return False
    try:
        return os.path.getsize(path) == size_bytes and file_sha256(path) == sha256
    except OSError:
        return False


def copy_saved(saved: SavedVideo, target: Path) -> SavedVideo:
    """An earlier identical job's file at target (copied unless it already is that file)."""
    if os.path.abspath(saved.path) == str(target):
        return saved
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(saved.path, part)
        os.chmod(part, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
        os.replace(part, target)
    finally:
        if os.path.exists(part):
            os.unlink(part)
    return SavedVideo(str(target), saved.size_bytes, saved.sha256)
