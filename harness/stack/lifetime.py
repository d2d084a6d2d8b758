"""Nothing the harness starts outlives it: not on a normal exit, not on SIGHUP, not on kill -9.

Three layers, from the gentlest:

- **close at exit**: owners of processes or containers (the backends) register with
  :func:`close_at_exit`; their ``close()`` runs at interpreter exit unless they closed (and
  :func:`forget_at_exit`-ed) before.
- **die with the parent** (Linux): every child the harness starts runs
  :func:`die_with_parent` between fork and exec: ``prctl(PR_SET_PDEATHSIG, SIGTERM)``. When
  the harness process dies for any reason, kill -9 included, the kernel sends each child
  SIGTERM (a role stops, the Janus launcher stops its cluster). The signal follows the
  thread that forked the child, so children are started from the thread that owns them.
- **sweep at start**: every child is recorded in a registry (one small JSON file per child
  under ``$TMPDIR/dap-faultrun-<uid>/children``, with its owner's pid and both processes'
  start times, so a reused pid is never mistaken for ours); :func:`sweep` (called when a
  Stack starts) kills the process groups of children whose owner is gone. That covers what
  PR_SET_PDEATHSIG cannot: grandchildren in the child's process group whose parent died first,
  and children started by a harness on another thread that exited.

Containers carry the labels of :func:`owner_labels`; the Docker backend's sweep removes the
ones whose owner is gone.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import weakref
from pathlib import Path
from typing import Any

__all__ = ["OWNER_LABEL", "close_at_exit", "die_with_parent", "exit_text", "forget_at_exit", "forget_child",
           "last_line", "owner_alive", "owner_labels", "record_child", "spawn", "sweep"]

log = logging.getLogger(__name__)

#: open backends (local and Docker), closed at interpreter exit if their owner did not
_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()
#: container label naming the harness process that owns a container: ``<pid>:<start time>``
OWNER_LABEL = "dap-faultrun.owner"
_PR_SET_PDEATHSIG = 1


def close_at_exit(backend: Any) -> None:
    """Have ``backend.close()`` run at interpreter exit unless it is closed (and
    :func:`forget_at_exit`-ed) before: the last resort that never leaves children or
    containers behind."""
    _LIVE.add(backend)


def forget_at_exit(backend: Any) -> None:
    _LIVE.discard(backend)


@atexit.register
def _close_all() -> None:
    for backend in list(_LIVE):
        backend.close()


# --- die with the parent ----------------------------------------------------------------------------

try:
    _libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
except OSError:  # pragma: no cover - no libc to talk to
    _libc = None


def die_with_parent() -> None:
    """For ``subprocess.Popen(preexec_fn=...)``: the child gets SIGTERM when its parent dies.

    Runs between fork and exec (async-signal-safe: one system call, no allocation).
    On a platform without prctl it does nothing; the sweep still covers it."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def spawn(cmd: list[str], *, what: str, **popen: Any) -> subprocess.Popen:
    """Start a child the way every harness child starts: its own session (a terminal's Ctrl-C
    reaches the harness only, which stops children in order), SIGTERM when the harness dies,
    recorded for the sweep. :func:`forget_child` it once it is stopped."""
    proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=die_with_parent, **popen)  # noqa: PLW1509
    record_child(proc.pid, what)
    return proc


def exit_text(returncode: int) -> str:
    """``was killed by SIGKILL`` / ``exited with status 7``."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def last_line(path: Path, n: int = 4000) -> str:
    """The last non-empty line of a log file (``no output``)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - n))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return "no log"
    lines = [x for x in tail.splitlines() if x.strip()]
    return lines[-1].strip()[:300] if lines else "no output"


# --- the registry and the sweep ---------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state first), or [] if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        return int(_stat(pid)[19])
    except (IndexError, ValueError):
        return None


def _still_running(pid: int, start: int) -> bool:
    """The same process (pid and start time) and not already dead: a zombie only waits for its
    new parent to reap it, there is nothing left to kill."""
    fields = _stat(pid)
    return len(fields) > 19 and fields[19] == str(start) and fields[0] not in ("Z", "X")


def _registry() -> Path:
    return Path(tempfile.gettempdir()) / f"dap-faultrun-{os.getuid()}" / "children"


def owner_labels() -> dict[str, str]:
    """Labels naming this process as the owner (containers)."""
    return {OWNER_LABEL: f"{os.getpid()}:{_start_time(os.getpid())}"}


def owner_alive(label: str) -> bool:
    """Whether the process a :data:`OWNER_LABEL` value names still runs (same pid, same start)."""
    pid_s, _, start = label.partition(":")
    try:
        pid = int(pid_s)
    except ValueError:
        return False
    return str(_start_time(pid)) == start


def record_child(pid: int, what: str) -> Path | None:
    """Note a child of this process (its process group is ``pid``: children start a session)."""
    path = _registry() / f"{pid}.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"pid": pid, "start": _start_time(pid), "owner": os.getpid(),
                                    "owner_start": _start_time(os.getpid()), "what": what}))
    except OSError as exc:  # no registry: PR_SET_PDEATHSIG still holds
        log.warning("cannot record child %s: %s", pid, exc)
        return None
    return path


def forget_child(pid: int) -> None:
    with contextlib.suppress(OSError):
        (_registry() / f"{pid}.json").unlink()


def sweep() -> list[str]:
    """Kill the process groups of recorded children whose owner is gone; return what was killed
    (one line each). A child that is gone, or whose pid now belongs to another process, is
    only forgotten."""
    killed = []
    root = _registry()
    if not root.is_dir():
        return killed
    for path in root.glob("*.json"):
        try:
            rec = json.loads(path.read_text())
            pid, owner = int(rec["pid"]), int(rec["owner"])
        except (OSError, ValueError, KeyError, TypeError):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        if rec.get("owner_start") is not None and _start_time(owner) == rec["owner_start"]:
            continue  # its owner (maybe this process) still runs
        if rec.get("start") is not None and _still_running(pid, rec["start"]):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                killed.append(f"{rec.get('what', 'child')} pid {pid} (owner {owner} is gone)")
        with contextlib.suppress(OSError):
            path.unlink()
    if killed:
        log.warning("removed leftovers of a harness that died: %s", "; ".join(killed))
    return killed
