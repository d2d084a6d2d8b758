"""Loopback ports for the processes the harness and the tests start.

A port handed to a child process is free when chosen and bound a moment later by the
child: in between, someone else may take it. Two takers matter here:

- outgoing connections: the kernel gives each one a local port from the *ephemeral* range
  (``net.ipv4.ip_local_port_range``, usually 32768-60999), and so does ``bind(port 0)``.
  With hundreds of connections a second during a test run, a port picked from that range
  is soon some connection's local port, and the child's bind fails (CI saw mitmdump exit
  with "address already in use"). So ports come from *below* the ephemeral range.
- other pickers (parallel test workers, a second faultrun): ports are handed out
  round robin from one counter shared by every process of this user on the machine
  (a small file under the temp dir, under ``flock``), so two pickers never get the same
  port until the whole range has gone round.

A port that is bound right now (another program's server) is skipped.
"""

from __future__ import annotations

import fcntl
import functools
import os
import random
import socket
import tempfile
from pathlib import Path

__all__ = ["free_port", "port_range"]

_LOWEST = 10_000  # below: well-known and commonly configured service ports
_FALLBACK_EPHEMERAL_LOW = 32_768


@functools.cache
def port_range() -> range:
    """The ports :func:`free_port` hands out: from 10000 up to the ephemeral range."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = _FALLBACK_EPHEMERAL_LOW
    if low - _LOWEST < 1_000:  # a system that made nearly everything ephemeral: share with the kernel
        return range(_LOWEST, 65_536)
    return range(_LOWEST, low)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _counter_path() -> Path:
    return Path(tempfile.gettempdir()) / f"dap-faultrun-ports-{os.getuid()}"


def _next_port(ports: range) -> int:
    """The port at the shared counter's position (which moves on by one)."""
    try:
        fd = os.open(_counter_path(), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:  # unwritable temp dir: random picks (collisions between pickers unlikely)
        return random.choice(ports)
    with os.fdopen(fd, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released by the close
        try:
            pos = int(f.read().strip()) % len(ports)
        except ValueError:  # new file (or damaged): start somewhere random, not always at the bottom
            pos = random.randrange(len(ports))
        f.seek(0)
        f.truncate()
        f.write(str((pos + 1) % len(ports)))
    return ports[pos]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and that no other picker is handed soon."""
    ports = port_range()
    for _ in range(256):
        port = _next_port(ports)
        if _bindable(port):
            return port
    raise OSError(f"no free TCP port on 127.0.0.1 in {ports.start}-{ports.stop - 1}")
