"""Finished clips kept by what shapes them, so an identical request is served without rendering again.

A simulated clip is a pure function of its ClipSpec (size, duration, prompt, mode, seed, input pictures, source
video, watermark, audio choice, on-screen label): the same request always gives the same MP4. So a clip is
rendered once per process and every later identical job gets a hard link (or copy) of it - re-running a
workflow, a demo or a test suite costs no second render. Jobs still take their simulated time (SimTiming);
only the CPU is saved. Identical jobs submitted at once wait for the one render in progress.

The clips live in a temporary folder named like the simulator's own (happyhorse-sim-<pid>-...), removed when
the process exits, or by the next simulator on this machine if the process was killed. At most max_clips /
max_bytes are kept; the least recently used go first.
"""
from __future__ import annotations

import atexit
import dataclasses
import hashlib
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from typing import Callable

from .video import ClipSpec


def clip_key(spec: ClipSpec, source_video: bytes | None = None) -> str:
    """A digest of everything that shapes the clip; the source video by its bytes (spec's path is per job)."""
    digest = hashlib.sha256()
    for item in dataclasses.fields(spec):
        value = getattr(spec, item.name)
        if item.name == "source_video":
            value = source_video
        elif item.name == "reference_images":
            value = b"".join(hashlib.sha256(image).digest() for image in value)
        if isinstance(value, bytes):
            value = hashlib.sha256(value).hexdigest()
        digest.update(f"{item.name}={value!r};".encode())
    return digest.hexdigest()


class RenderCache:
    def __init__(self, prefix: str, max_clips: int = 64, max_bytes: int = 512 << 20) -> None:
        self.prefix = prefix
        self.max_clips, self.max_bytes = max_clips, max_bytes
        self.folder: str | None = None
        self.clips: OrderedDict[str, int] = OrderedDict()    # key -> size, least recently used first
        self.hits = self.renders = 0
        self._lock = threading.Lock()
        self._rendering: dict[str, threading.Lock] = {}

    def produce(self, key: str, out_path: str, render: Callable[[str], None]) -> bool:
        """Put the clip for key at out_path: linked from the cache, or made by render(path) and kept.
        True if it came from the cache."""
        with self._lock:
            in_progress = self._rendering.setdefault(key, threading.Lock())
        with in_progress:
            if self._take(key, out_path):
                return True
            try:
                render(out_path)
                self._keep(key, out_path)
            finally:
                with self._lock:
                    self._rendering.pop(key, None)
            return False

    def _take(self, key: str, out_path: str) -> bool:
        with self._lock:
            if key not in self.clips:
                return False
            self.clips.move_to_end(key)
            self.hits += 1
            _link_or_copy(self._path(key), out_path)
            return True

    def _keep(self, key: str, path: str) -> None:
        size = os.path.getsize(path)
        with self._lock:
            self.renders += 1
            if size > self.max_bytes:
                return
            if self.folder is None:
                self.folder = tempfile.mkdtemp(prefix=f"{self.prefix}{os.getpid()}-renders-")
                atexit.register(self.clear)
            _link_or_copy(path, self._path(key))
            self.clips[key] = size
            while len(self.clips) > self.max_clips or sum(self.clips.values()) > self.max_bytes:
                old, _ = self.clips.popitem(last=False)
                os.unlink(self._path(old))

    def _path(self, key: str) -> str:
        assert self.folder is not None
        return os.path.join(self.folder, f"{key}.mp4")

    def clear(self) -> None:
        with self._lock:
            if self.folder is not None:
                shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
            self.clips.clear()


def _link_or_copy(source: str, target: str) -> None:
    """A hard link costs nothing; a copy where links are not possible (another file system)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
