"""Loopback ports for child processes: outside the kernel's ephemeral range, never the same
port to two pickers in a row, bound ports skipped (harness.stack.ports)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.stack import ports
from harness.stack.ports import free_port, port_range

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def private_counter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    counter = tmp_path / "ports-counter"
    monkeypatch.setattr(ports, "_counter_path", lambda: counter)
    return counter


def test_ports_come_from_below_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = port_range()
    assert rng.start == 10_000 and rng.stop == low
    picked = [free_port() for _ in range(20)]
    assert all(10_000 <= p < low for p in picked)
    # A port the kernel gives to bind(0) (as to every outgoing connection) is never in it.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        assert s.getsockname()[1] not in rng


def test_round_robin_across_processes(private_counter: Path) -> None:
    code = ("import sys\nfrom pathlib import Path\nfrom harness.stack import ports\n"
            f"ports._counter_path = lambda: Path({str(private_counter)!r})\n"
            "print(' '.join(str(ports.free_port()) for _ in range(50)))\n")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    picked = [int(x) for out in outs for x in out.split()]
    assert len(picked) == 200
    assert len(set(picked)) == 200  # no port handed to two pickers


def test_a_bound_port_is_skipped(private_counter: Path) -> None:
    first = free_port()
    private_counter.write_text(str(first - port_range().start))  # the next pick would be `first` again
    with socket.socket() as s:
        s.bind(("127.0.0.1", first))
        s.listen()
        got = free_port()
        assert got != first and got in port_range()


def test_damaged_counter_restarts_somewhere_in_range(private_counter: Path) -> None:
    private_counter.write_text("not a number")
    assert free_port() in port_range()
    assert int(private_counter.read_text()) in range(len(port_range()) + 1)


def test_unwritable_counter_falls_back_to_random_picks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ports, "_counter_path", lambda: tmp_path / "missing-dir" / "counter")
    assert free_port() in port_range()
