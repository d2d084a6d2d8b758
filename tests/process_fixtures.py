"""Finding and reaping the processes a test's faultrun started (by a path only they mention)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def live(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def procs_mentioning(text: str) -> list[str]:
    """``pid: cmdline`` of every live (not zombie) process whose command line contains ``text``."""
    out = []
    for pid in Path("/proc").iterdir():
        if not pid.name.isdigit():
            continue
        try:
            cmd = (pid / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmd and live(int(pid.name)):
            out.append(f"{pid.name}: {cmd}")
    return out


def pid_of(text: str, also: str) -> int:
    """The pid of the one live process whose command line holds both strings."""
    (line,) = [p for p in procs_mentioning(text) if also in p]
    return int(line.split(":", 1)[0])


def wait_pids_gone(pids: list[int], timeout_s: float) -> list[int]:
    """Wait until none of ``pids`` runs; return the ones still running at the deadline."""
    deadline = time.monotonic() + timeout_s
    while (left := [p for p in pids if live(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def wait_gone(text: str, timeout_s: float) -> list[str]:
    """Wait until no process mentions ``text``; return the ones still there at the deadline."""
    deadline = time.monotonic() + timeout_s
    while (left := procs_mentioning(text)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def reap(text: str) -> None:
    """SIGKILL whatever still mentions ``text`` (a failing test leaves nothing running)."""
    for entry in procs_mentioning(text):
        try:
            os.kill(int(entry.split(":", 1)[0]), signal.SIGKILL)
        except OSError:
            pass
