"""The Janus launcher (harness/stack/janus.py) without Janus: config generation, migration
order, one-line errors for a missing install, and supervision with stand-in children."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.stack import janus, ports
from harness.stack.janus import (
    ChildSpec,
    Cluster,
    LaunchError,
    Ports,
    SetupError,
    Supervisor,
    Timings,
    extensions_to_create,
    find_install,
    janus_configs,
    job_processes,
    order_migrations,
    pick_ports,
    reachable_by,
    seconds_from_ms,
)

REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- migrations

JANUS_07_DB = [f"{n:014d}_{name}.{d}.sql" for n, name in [
    (1, "initial_schema"), (2, "collection_job_step_attempts"), (3, "outstanding_batch_state"),
    (4, "batch_aggregation_gc"), (5, "global_hpke_keys_last_state_change_at"),
    (6, "global_hpke_keys_last_state_change_at_drop_default"), (7, "task_aggregation_counters"),
    (8, "aggregation_jobs_expresssion_index"), (9, "task_aggregation_counters_failures"),
] for d in ("down", "up")]


def test_migrations_janus_layout_up_only_in_order() -> None:
    got = order_migrations(reversed(JANUS_07_DB))
    assert got == sorted(n for n in JANUS_07_DB if n.endswith(".up.sql"))
    assert got[0] == "00000000000001_initial_schema.up.sql" and len(got) == 9


def test_migrations_sort_by_number_not_text() -> None:
    names = ["10_ten.up.sql", "9_nine.up.sql", "100_hundred.up.sql", "0002_two.up.sql", "README.md",
             "9_nine.down.sql"]
    assert order_migrations(names) == ["0002_two.up.sql", "9_nine.up.sql", "10_ten.up.sql", "100_hundred.up.sql"]


def test_migrations_plain_sql_when_no_up_files() -> None:
    assert order_migrations(["2_b.sql", "1_a.sql", "notes.txt"]) == ["1_a.sql", "2_b.sql"]


@pytest.mark.parametrize(("names", "needle"), [
    (["1_a.up.sql", "latest.up.sql"], "latest.up.sql: name must start with a number"),
    (["1_a.up.sql", "0001_b.up.sql"], "have the same number 1"),
])
def test_migrations_bad_names(names: list[str], needle: str) -> None:
    with pytest.raises(LaunchError, match=needle):
        order_migrations(names)


def test_extensions_created_by_migrations_are_not_created_again() -> None:
    janus_first = "CREATE EXTENSION pgcrypto;\n-- comment\ncreate extension if not exists \"btree_gist\";\n"
    assert extensions_to_create([janus_first, "CREATE TABLE t (x INT);"]) == []
    assert extensions_to_create(["CREATE EXTENSION pgcrypto;"]) == ["btree_gist"]
    assert extensions_to_create([]) == ["pgcrypto", "btree_gist"]


# ----------------------------------------------------------------------------- configs

PORTS_LEADER = Ports(api=8080, aggregator=20001, postgres=20002,
                     health={"key_rotator": 20003, "aggregator": 20004, "aggregation_job_creator": 20005,
                             "aggregation_job_driver": 20006, "collection_job_driver": 20007,
                             "janus_interop_aggregator": 20008})


def _listeners(cfg: dict) -> list[str]:
    return [cfg[k] for k in ("listen_address", "health_check_listen_address") if k in cfg]


def test_leader_configs_every_listener_on_loopback() -> None:
    cfgs = janus_configs(role="leader", host="127.0.0.1", ports=PORTS_LEADER)
    assert set(cfgs) == {"key_rotator", "aggregator", "aggregation_job_creator", "aggregation_job_driver",
                         "collection_job_driver", "janus_interop_aggregator"}
    addrs = [a for c in cfgs.values() for a in _listeners(c)]
    assert all(a.startswith("127.0.0.1:") for a in addrs)
    assert len(set(addrs)) == len(addrs)  # no two processes share a port
    for c in cfgs.values():
        assert c["database"] == {"url": "postgres://postgres@127.0.0.1:20002/janus", "check_schema_version": False}
        json.dumps(c)  # JSON text is the YAML the binaries read
    interop = cfgs["janus_interop_aggregator"]
    assert interop["listen_address"] == "127.0.0.1:8080"
    assert interop["aggregator_address"] == cfgs["aggregator"]["listen_address"] == "127.0.0.1:20001"
    assert interop["health_check_peers"] == [f"http://127.0.0.1:{p}/healthz" for p in (20004, 20005, 20006, 20007)]
    assert cfgs["key_rotator"]["key_rotator"] == {"hpke": {}}


def test_leader_timings() -> None:
    t = Timings(job_interval_s=2, request_timeout_s=1, lease_s=5, max_attempts=4, max_job_size=50)
    cfgs = janus_configs(role="leader", host="127.0.0.1", ports=PORTS_LEADER, timings=t)
    creator, driver, coll = (cfgs[n] for n in janus.LEADER_JOBS)
    assert creator["aggregation_job_creation_interval_s"] == creator["tasks_update_frequency_s"] == 2
    assert (creator["min_aggregation_job_size"], creator["max_aggregation_job_size"]) == (1, 50)
    for d in (driver, coll):
        assert d["job_discovery_interval_s"] == 2
        assert d["http_request_timeout_s"] == 1 and d["http_request_connection_timeout_s"] == 1
        assert (d["worker_lease_duration_s"], d["worker_lease_clock_skew_allowance_s"]) == (5, 1)
        assert d["maximum_attempts_before_failure"] == 4
        assert d["retry_max_elapsed_time_ms"] < (d["worker_lease_duration_s"] - 1) * 1000
    assert coll["min_collection_job_retry_delay_s"] == coll["max_collection_job_retry_delay_s"] == 2
    # one shard count for the whole deployment
    assert len({c["batch_aggregation_shard_count"] for c in (creator, driver, coll, cfgs["aggregator"])}) == 1


def test_helper_runs_no_job_processes() -> None:
    ports = pick_ports("helper", 8081, picker=iter(range(30000, 30100)).__next__)
    assert set(ports.health) == {"key_rotator", "aggregator", "janus_interop_aggregator"}
    cfgs = janus_configs(role="helper", host="127.0.0.1", ports=ports)
    assert set(cfgs) == {"key_rotator", "aggregator", "janus_interop_aggregator"}
    assert cfgs["janus_interop_aggregator"]["health_check_peers"] == [
        f"http://127.0.0.1:{ports.health['aggregator']}/healthz"]
    assert job_processes("helper") == ("aggregator",)


def test_ipv6_loopback_is_bracketed() -> None:
    cfgs = janus_configs(role="helper", host="::1", ports=PORTS_LEADER)
    assert cfgs["janus_interop_aggregator"]["listen_address"] == "[::1]:8080"


def test_intervals_are_whole_seconds() -> None:
    assert [seconds_from_ms(ms) for ms in (1, 100, 500, 999, 1000, 1001, 2500)] == [1, 1, 1, 1, 1, 2, 3]


def test_lease_must_outlast_a_request() -> None:
    with pytest.raises(LaunchError, match="--lease-s 2 must exceed"):
        Timings(lease_s=2, request_timeout_s=1, lease_skew_s=1)


def test_pick_ports_distinct_and_never_the_api_port() -> None:
    picks = iter([8080, 30000, 30000, 30001, 30002, 30003, 30004, 30005, 30006, 30007, 30008])
    p = pick_ports("leader", 8080, picker=picks.__next__)
    allp = [p.aggregator, p.postgres, *p.health.values()]
    assert len(set(allp)) == len(allp) == 8 and 8080 not in allp


def test_launcher_picks_ports_from_the_harness_counter() -> None:
    # one picker for every process of the user: the launcher, the harness and other launchers
    # are never handed the same port at once (tests/test_ports.py tests the counter itself)
    assert janus.free_port is ports.free_port
    assert pick_ports("helper", 8080).postgres in ports.port_range()


def test_postgres_listens_on_loopback_only(tmp_path: Path) -> None:
    c = Cluster(root=tmp_path / "pg", pg_bin=Path("/pg/bin"), port=25432, state_dir=tmp_path, user=None,
                socket_dir=str(tmp_path / "pg"))
    argv = list(c.server_spec().argv)
    settings = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "-c")
    assert settings["listen_addresses"] == "127.0.0.1"
    assert settings["unix_socket_directories"] == str(tmp_path / "pg")
    assert argv[argv.index("-p") + 1] == "25432"
    assert c.server_spec().stop_signal == signal.SIGQUIT
    assert "trust" in c.initdb_spec().argv


def test_reachable_by(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    inner = closed / "inner"
    inner.mkdir(parents=True)
    closed.chmod(0o700)
    tmp_path.chmod(0o755)
    someone = 54321
    assert not reachable_by(inner, someone, [someone])
    assert reachable_by(inner, os.stat(closed).st_uid, [])  # the owner may
    closed.chmod(0o711)
    assert reachable_by(inner, someone, [someone]) == all(
        os.stat(p).st_mode & stat.S_IXOTH for p in [*inner.parents])


# ----------------------------------------------------------------------------- missing install


def _exe(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def install(tmp_path: Path) -> dict[str, Path]:
    """A stand-in install: executables that are never run, a db/ with two migrations, fake PG tools."""
    b, src, pg = tmp_path / "bin", tmp_path / "src", tmp_path / "pg"
    _exe(b / "janus_aggregator")
    _exe(b / "janus_interop_aggregator")
    (src / "db").mkdir(parents=True)
    for n in ("00000000000002_b.up.sql", "00000000000001_a.up.sql", "00000000000001_a.down.sql"):
        (src / "db" / n).write_text("SELECT 1;\n")
    for tool in janus.PG_TOOLS:
        _exe(pg / tool)
    return {"bin": b, "src": src, "pg": pg}


def _run_launcher(env: dict[str, str], *args: str, tmp: Path) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in {"JANUS_BIN_DIR", "JANUS_SRC", "PG_BIN"}}
    return subprocess.run([sys.executable, "-m", "harness.stack.janus", "--role", "leader", "--port", "18080",
                           "--state-dir", str(tmp / "state"), *args], cwd=REPO, env={**base, **env},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("case", "needle"), [
    ("no-bin", "JANUS_BIN_DIR not set"),
    ("bin-missing-dir", "JANUS_BIN_DIR is not a directory"),
    ("no-aggregator", "JANUS_BIN_DIR/janus_aggregator not found"),
    ("no-interop", "JANUS_BIN_DIR/janus_interop_aggregator not found"),
    ("no-src", "JANUS_SRC not set"),
    ("src-no-db", "JANUS_SRC/db not found"),
    ("db-empty", "JANUS_SRC/db has no migrations"),
    ("pg-missing", "PG_BIN/initdb not found"),
])
def test_missing_install_exits_2_with_one_line(case: str, needle: str, install: dict[str, Path],
                                               tmp_path: Path) -> None:
    env = {"JANUS_BIN_DIR": str(install["bin"]), "JANUS_SRC": str(install["src"]), "PG_BIN": str(install["pg"])}
    if case == "no-bin":
        del env["JANUS_BIN_DIR"]
    elif case == "bin-missing-dir":
        env["JANUS_BIN_DIR"] = str(tmp_path / "nope")
    elif case == "no-aggregator":
        (install["bin"] / "janus_aggregator").unlink()
    elif case == "no-interop":
        (install["bin"] / "janus_interop_aggregator").unlink()
    elif case == "no-src":
        del env["JANUS_SRC"]
    elif case == "src-no-db":
        env["JANUS_SRC"] = str(install["bin"])
    elif case == "db-empty":
        for p in (install["src"] / "db").iterdir():
            p.unlink()
    elif case == "pg-missing":
        (install["pg"] / "initdb").unlink()
    r = _run_launcher(env, tmp=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "state").exists()  # nothing started, nothing created


def test_non_loopback_host_refused(install: dict[str, Path], tmp_path: Path) -> None:
    env = {"JANUS_BIN_DIR": str(install["bin"]), "JANUS_SRC": str(install["src"]), "PG_BIN": str(install["pg"])}
    r = _run_launcher(env, "--host", "0.0.0.0", tmp=tmp_path)
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1 and "not a loopback address" in r.stderr


def test_find_install_accepts_the_multicall_interop_binary(install: dict[str, Path]) -> None:
    (install["bin"] / "janus_interop_aggregator").unlink()
    multi = _exe(install["bin"] / "janus_interop")
    got = find_install(bin_dir=str(install["bin"]), src=str(install["src"]), pg_bin=str(install["pg"]))
    assert got.interop == (str(multi), "janus_interop_aggregator")
    assert got.aggregator == (str(install["bin"] / "janus_aggregator"),)
    assert [m.name for m in got.migrations] == ["00000000000001_a.up.sql", "00000000000002_b.up.sql"]


# ----------------------------------------------------------------------------- supervision

CHILD = r"""
import os, signal, sys, time
open(sys.argv[1], "w").write(str(os.getpid()))
mode = sys.argv[2]
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "die":
    time.sleep(0.5)
    print("stand-in child giving up", flush=True)
    sys.exit(3)
while True:
    time.sleep(0.1)
"""

DRIVER = r"""
import json, logging, sys
from harness.stack import janus
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
specs = [janus.ChildSpec(name=d["name"], argv=d["argv"], log_path=d["log"]) for d in json.loads(sys.argv[1])]
sys.exit(janus.run_children(specs, stop_timeout_s=float(sys.argv[2])))
"""


def _alive(pid: int) -> bool:
    """Running (a zombie is dead: nobody may reap it in a container)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return fields[0] != "Z"


def _wait(cond, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


class Launch:
    def __init__(self, tmp: Path, modes: dict[str, str], stop_timeout_s: float = 1.0) -> None:
        (tmp / "child.py").write_text(CHILD)
        self._out: str | None = None
        self.pidfiles = {n: tmp / f"{n}.pid" for n in modes}
        specs = [{"name": n, "argv": [sys.executable, str(tmp / "child.py"), str(self.pidfiles[n]), m],
                  "log": str(tmp / f"{n}.log")} for n, m in modes.items()]
        self.proc = subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(specs), str(stop_timeout_s)],
                                     cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        assert _wait(lambda: all(p.exists() and p.read_text() for p in self.pidfiles.values())), self.output()
        self.pids = {n: int(p.read_text()) for n, p in self.pidfiles.items()}

    def output(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        if self._out is None:
            self._out = self.proc.stdout.read() if self.proc.stdout else ""
        return self._out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pid in getattr(self, "pids", {}).values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def launch(tmp_path: Path):
    made: list[Launch] = []

    def make(modes: dict[str, str], stop_timeout_s: float = 1.0) -> Launch:
        made.append(Launch(tmp_path, modes, stop_timeout_s))
        return made[-1]

    yield make
    for m in made:
        m.close()


def test_a_child_exiting_stops_the_rest_and_the_launcher_fails(launch) -> None:
    la = launch({"postgres": "sleep", "aggregator": "die", "aggregation_job_driver": "sleep"})
    code = la.proc.wait(15)
    out = la.output()
    assert code == 1, out
    assert "aggregator exited with status 3: stand-in child giving up" in out
    assert out.strip().splitlines()[-1].endswith("stand-in child giving up")  # the harness shows the last line
    assert _wait(lambda: not any(_alive(p) for p in la.pids.values()))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_stops_every_child(launch, sig: int) -> None:
    la = launch({"postgres": "sleep", "aggregator": "sleep", "janus_interop_aggregator": "sleep"})
    t0 = time.monotonic()
    la.proc.send_signal(sig)
    code = la.proc.wait(15)
    assert code == 0, la.output()
    assert time.monotonic() - t0 < 4.0
    assert not any(_alive(p) for p in la.pids.values())


def test_a_child_ignoring_sigterm_is_killed_after_the_stop_timeout(launch) -> None:
    la = launch({"stubborn": "stubborn", "polite": "sleep"}, stop_timeout_s=1.0)
    t0 = time.monotonic()
    os.killpg(la.proc.pid, signal.SIGTERM)  # as the harness's LocalBackend.stop does
    assert la.proc.wait(15) == 0
    assert 0.9 < time.monotonic() - t0 < 4.0
    assert "stubborn" in la.output() and "SIGKILL" in la.output()
    assert not any(_alive(p) for p in la.pids.values())


def test_children_die_with_a_killed_launcher(launch) -> None:
    la = launch({"postgres": "sleep", "aggregator": "stubborn"})
    la.proc.kill()  # kill -9: no cleanup runs
    la.proc.wait(10)
    assert _wait(lambda: not any(_alive(p) for p in la.pids.values()), 5.0)


def test_run_to_end_reports_a_failed_one_shot(tmp_path: Path) -> None:
    with Supervisor() as sup:
        spec = ChildSpec("key_rotator", (sys.executable, "-c", "print('no database'); raise SystemExit(4)"),
                         tmp_path / "key_rotator.log")
        with pytest.raises(SetupError, match="key_rotator exited with status 4: no database"):
            sup.run_to_end(spec, timeout_s=30)
        assert sup.children == []
        ok = ChildSpec("initdb", (sys.executable, "-c", "pass"), tmp_path / "initdb.log")
        sup.run_to_end(ok, timeout_s=30)


def test_a_second_stop_signal_does_not_cut_the_cleanup_short(launch) -> None:
    la = launch({"stubborn": "stubborn", "polite": "sleep"}, stop_timeout_s=1.5)
    la.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)  # the launcher is now waiting for the stubborn child
    la.proc.send_signal(signal.SIGTERM)
    la.proc.send_signal(signal.SIGINT)
    assert la.proc.wait(15) == 0, la.output()
    assert "SIGKILL" in la.output() and "Traceback" not in la.output()
    assert not any(_alive(p) for p in la.pids.values())
