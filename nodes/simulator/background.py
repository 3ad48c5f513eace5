"""`happyhorse simulate --background` / `--stop`: a simulator that outlives the command that started it.

`URL=$(happyhorse simulate --background)` returns at once: the server runs in its own session with its
output away from the caller's pipe (so a shell's $(...) does not wait for it), and its pid and URL are kept in
$HAPPYHORSE_HOME/simulator.json for `--stop` (and for a second `--background`, which reuses it).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..engine.errors import HappyHorseError
from ..engine.ledger import default_home

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def state_path() -> Path:
    return default_home() / "simulator.json"


def log_path() -> Path:
    return default_home() / "simulator.log"


def running() -> dict | None:
    """The background simulator's {"pid", "url"} if it is still up; a stale record is removed."""
    path = state_path()
    try:
        state = json.loads(path.read_text())
        os.kill(int(state["pid"]), 0)
        _answers(state["url"])
        return state
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return None


def _answers(url: str) -> None:
    """Raises OSError unless a simulator answers at url (any HTTP status will do: /_sim/* needs --control)."""
    try:
        urllib.request.urlopen(url + "/files/alive.mp4", timeout=5).close()
    except urllib.error.HTTPError:
        pass


def start(serve_args: list[str]) -> tuple[str, bool]:
    """Start one (or find the one running); returns its base URL and whether it was already running."""
    state = running()
    if state is not None:
        return state["url"], True
    default_home().mkdir(parents=True, exist_ok=True)
    with open(log_path(), "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "happyhorse.cli", "simulate", *serve_args],
                                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True)     # Ctrl-C in this shell does not reach it
    deadline = time.monotonic() + START_TIMEOUT_S
    line = b""
    while time.monotonic() < deadline and proc.poll() is None and not line:
        line = proc.stdout.readline()       # the served process prints its URL first, then nothing more here
    proc.stdout.close()
    url = line.decode().strip()
    if not url.startswith("http://"):
        if proc.poll() is None:
            proc.terminate()
        raise HappyHorseError(f"The simulator did not start; its log is {log_path()}")
    state_path().write_text(json.dumps({"pid": proc.pid, "url": url}))
    return url, False


def stop() -> str:
    """Stop the background simulator (it removes its videos as it goes); returns the URL it served."""
    state = running()
    if state is None:
        raise HappyHorseError("No background simulator is running (start one with `happyhorse simulate "
                              "--background`).")
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise HappyHorseError(f"The simulator (pid {pid}) did not stop within {STOP_TIMEOUT_S:.0f} s")
    state_path().unlink(missing_ok=True)
    return state["url"]
