"""``python -m harness.stack.janus``: run a user's Janus 0.7 build as one interop Aggregator.

Janus's ``release/0.7`` line implements DAP-09. Its interop image runs, under supervisord, a
PostgreSQL server, the ``janus_interop_aggregator`` (the interop test API; it proxies DAP to
the aggregator) and the ``janus_aggregator`` processes. This launcher does the same with
binaries the user already has, all on loopback, as one process the harness can start, watch
and stop::

    python -m harness.stack.janus --role leader|helper --host 127.0.0.1 --port PORT \\
        --state-dir DIR [--job-interval-ms N] [--request-timeout-s S] [--lease-s S] ...

What it needs (missing or wrong: exit 2 with one line naming it):

- ``JANUS_BIN_DIR`` (or ``--janus-bin-dir``): ``janus_aggregator`` (the multicall binary with
  the ``aggregator``, ``aggregation_job_creator``, ``aggregation_job_driver``,
  ``collection_job_driver`` and ``key_rotator`` subcommands) and ``janus_interop_aggregator``
  (or the multicall ``janus_interop`` it is a name of).
- ``JANUS_SRC`` (or ``--janus-src``): a Janus checkout of the same version; its ``db/``
  holds the schema migrations (``NNNN_name.up.sql``), applied in numeric order.
- PostgreSQL server binaries (``initdb``, ``postgres``, ``psql``, ``pg_isready``) and the
  contrib extensions ``pgcrypto`` and ``btree_gist``: ``PG_BIN`` / ``--pg-bin``, else the
  newest ``/usr/lib/postgresql/*/bin`` (Debian's ``postgresql-15`` + ``postgresql-contrib``).

What it runs, every listener on 127.0.0.1:

1. A private PostgreSQL cluster in ``STATE_DIR/pg`` (``initdb``, then ``postgres`` as a
   child, ``listen_addresses=127.0.0.1`` on a free port, its Unix socket in the same
   directory when the path is short enough, else none; ``fsync=off``: a throw-away cluster).
   As root, ``initdb`` and ``postgres`` run as the ``postgres`` user (``JANUS_PG_USER``;
   ``nobody`` when there is none); when that user cannot reach the state directory, the
   cluster goes to a fresh directory under the temp dir instead. Database ``janus``, the
   extensions the migrations do not create themselves, then every migration, each in one
   transaction (``psql --single-transaction``; a file starting ``-- no-transaction`` without).
2. ``janus_aggregator key_rotator`` once (it is one-shot in 0.7): the global HPKE key.
3. ``janus_aggregator aggregator`` (DAP, on a free internal port), and for ``--role leader``
   ``aggregation_job_creator``, ``aggregation_job_driver`` and ``collection_job_driver``
   (a Janus Helper needs none of them: it only answers).
4. ``janus_interop_aggregator`` on ``--host:--port``: the interop test API, DAP under ``/``
   proxied to the aggregator; its ``/internal/test/ready`` answers 503 until every process
   above answers its ``/healthz``.

Timings (Janus 0.7 takes these intervals in whole seconds; 1 s is the shortest that is not a
busy loop, so ``--job-interval-ms`` is rounded up to whole seconds, at least 1):

- aggregation job creation and task discovery every 1 s (``aggregation_job_creation_interval_s``,
  ``tasks_update_frequency_s``), jobs of 1 to ``--max-job-size`` (100) reports;
- job drivers look for work every 1 s when idle (``job_discovery_interval_s``; with work they
  loop at once); collection jobs not ready are retried after 1 s;
- requests to the Helper: ``--request-timeout-s`` (1; the catalogue's
  ``LEADER_REQUEST_TIMEOUT_MS``), connect timeout 1 s, retried within one job step with
  backoff 100 ms .. 500 ms for at most 2 s (``retry_*_ms``);
- a job step holds a lease of ``--lease-s`` (4 s, 1 s clock-skew allowance): a step that failed
  is retried when its lease expires; after ``--max-attempts`` (3) steps a job is abandoned;
- uploads are written in batches of up to 100 reports or after 10 ms;
- reports from the future: Janus's interop ``add_task`` fixes the tolerated skew at 1 s.

Supervision: stdout and stderr of each process go to ``STATE_DIR/<name>.log`` (the harness
collects ``*.log``; Janus logs JSON lines, level ``RUST_LOG``, default ``info``), configs to
``STATE_DIR/config/``. Every child runs in its own session with ``PR_SET_PDEATHSIG`` = SIGKILL,
so nothing outlives the launcher, not even a ``kill -9`` of it. If any child exits, the
launcher says which (last line of its log), stops the rest and exits 1; SIGTERM or SIGINT
stops every child (SIGTERM, SIGKILL after 2.5 s; ``janus_interop_aggregator``, which ignores
SIGTERM, gets SIGINT; PostgreSQL SIGQUIT, an immediate shutdown) and exits 0. Either way the
cluster directory is removed (``--keep-cluster`` keeps it).

Exit status: 0 stopped by a signal; 1 a child exited or the setup failed; 2 a usage or
environment error (one line on stderr).

THE INTEROP TEST API IS FOR TESTING ONLY: it takes task secrets without authentication. The
launcher refuses a ``--host`` that is not a loopback address.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ipaddress
import json
import logging
import math
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import attrs

from harness.stack.lifetime import last_line
from harness.stack.ports import free_port

__all__ = [
    "ChildSpec", "Cluster", "JanusInstall", "JanusStack", "LaunchError", "Ports", "SetupError", "Stopped",
    "Supervisor", "Timings", "build_parser", "extensions_to_create", "find_install", "free_port", "janus_configs",
    "job_processes", "main", "order_migrations", "pick_ports", "reachable_by", "run_children", "seconds_from_ms",
    "supervise",
]

PROG = "harness.stack.janus"
log = logging.getLogger(PROG)

BIN_ENV, SRC_ENV, PG_ENV, PG_USER_ENV = "JANUS_BIN_DIR", "JANUS_SRC", "PG_BIN", "JANUS_PG_USER"
#: Subcommands of the multicall ``janus_aggregator`` this launcher keeps running.
LEADER_JOBS = ("aggregation_job_creator", "aggregation_job_driver", "collection_job_driver")
INTEROP = "janus_interop_aggregator"
REQUIRED_EXTENSIONS = ("pgcrypto", "btree_gist")
PG_TOOLS = ("initdb", "postgres", "psql", "pg_isready")
DB_NAME, DB_USER = "janus", "postgres"
#: sun_path is 108 bytes with the NUL; PostgreSQL's socket is ``<dir>/.s.PGSQL.<port>``.
_MAX_SOCKET_PATH = 107
#: Shards of batch aggregations and task counters: few, the test batches are small. The same
#: value for every process of one deployment.
SHARDS = 8


class LaunchError(Exception):
    """A usage or environment error: one line, exit status 2."""


class SetupError(Exception):
    """The stack could not be brought up (initdb, PostgreSQL, a migration): exit status 1."""


class Stopped(BaseException):  # noqa: N818 - like KeyboardInterrupt, not an error
    """Raised in the main thread by the first SIGTERM / SIGINT."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# --------------------------------------------------------------------------- inputs


@attrs.frozen
class JanusInstall:
    """Where the binaries, the migrations and PostgreSQL are."""

    aggregator: tuple[str, ...]  # argv prefix; the subcommand follows
    interop: tuple[str, ...]  # argv prefix of janus_interop_aggregator
    migrations: tuple[Path, ...]  # in the order they are applied
    pg_bin: Path


def _executable(p: Path) -> bool:
    return p.is_file() and os.access(p, os.X_OK)


def _pg_version_key(p: Path) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", p.parent.name)) or (0,)


def find_pg_bin(explicit: str | None, *, search: Iterable[Path] | None = None) -> Path:
    """The PostgreSQL bin directory: ``explicit`` (PG_BIN / --pg-bin) or the newest Debian one."""
    if explicit:
        d = Path(explicit)
        for tool in PG_TOOLS:
            if not _executable(d / tool):
                raise LaunchError(f"{PG_ENV}/{tool} not found ({d / tool})")
        return d
    cands = sorted(search if search is not None else Path("/usr/lib/postgresql").glob("*/bin"),
                   key=_pg_version_key, reverse=True)
    for d in cands:
        if all(_executable(d / tool) for tool in PG_TOOLS):
            return d
    raise LaunchError(f"PostgreSQL not found: no /usr/lib/postgresql/*/bin with {', '.join(PG_TOOLS)} "
                      f"(install postgresql-15 and postgresql-contrib, or set {PG_ENV})")


def check_extensions(pg_bin: Path) -> None:
    """The contrib extensions Janus's schema needs are installed (when pg_config can tell)."""
    pg_config = pg_bin / "pg_config"
    if not _executable(pg_config):
        return
    try:
        share = subprocess.run([str(pg_config), "--sharedir"], capture_output=True, text=True, timeout=10,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return
    for ext in REQUIRED_EXTENSIONS:
        if not (Path(share) / "extension" / f"{ext}.control").is_file():
            raise LaunchError(f"PostgreSQL extension {ext} not installed (no {share}/extension/{ext}.control; "
                              "install postgresql-contrib)")


def order_migrations(names: Iterable[str]) -> list[str]:
    """The migrations among ``names``, in the order to apply them: by numeric prefix.

    sqlx's reversible naming ``<number>_<description>.up.sql`` (``.down.sql`` and other files
    are ignored); when there is no ``.up.sql`` at all, plain ``<number>_<description>.sql``.
    Sorting is by the number's value, not the text (``9_`` before ``10_``). A migration
    without a number, or two with the same number, is a :class:`LaunchError`.
    """
    names = list(names)
    ups = [n for n in names if n.endswith(".up.sql")]
    if not ups:
        ups = [n for n in names if n.endswith(".sql") and not n.endswith(".down.sql")]
    keyed: dict[int, str] = {}
    for n in ups:
        m = re.fullmatch(r"(\d+)_.+", n)
        if m is None:
            raise LaunchError(f"migration {n}: name must start with a number and '_' (sqlx naming)")
        v = int(m.group(1))
        if v in keyed:
            raise LaunchError(f"migrations {keyed[v]} and {n} have the same number {v}")
        keyed[v] = n
    return [keyed[v] for v in sorted(keyed)]


_CREATE_EXTENSION = re.compile(r"\bcreate\s+extension\s+(?:if\s+not\s+exists\s+)?\"?([A-Za-z_][A-Za-z0-9_]*)",
                               re.IGNORECASE)


def extensions_to_create(migration_texts: Iterable[str]) -> list[str]:
    """The required extensions no migration creates itself (Janus 0.7's first one creates both:
    creating them beforehand would make its plain ``CREATE EXTENSION`` fail)."""
    created = {m.lower() for text in migration_texts for m in _CREATE_EXTENSION.findall(text)}
    return [e for e in REQUIRED_EXTENSIONS if e not in created]


def find_install(*, bin_dir: str | None, src: str | None, pg_bin: str | None) -> JanusInstall:
    """Check every input; the first missing one is a one-line :class:`LaunchError`."""
    if not bin_dir:
        raise LaunchError(f"{BIN_ENV} not set (the directory with janus_aggregator and {INTEROP}; "
                          "or --janus-bin-dir)")
    b = Path(bin_dir)
    if not b.is_dir():
        raise LaunchError(f"{BIN_ENV} is not a directory: {b}")
    if not _executable(b / "janus_aggregator"):
        raise LaunchError(f"{BIN_ENV}/janus_aggregator not found ({b / 'janus_aggregator'})")
    if _executable(b / INTEROP):
        interop: tuple[str, ...] = (str(b / INTEROP),)
    elif _executable(b / "janus_interop"):  # the multicall binary under its own name
        interop = (str(b / "janus_interop"), INTEROP)
    else:
        raise LaunchError(f"{BIN_ENV}/{INTEROP} not found (nor janus_interop) in {b}")
    if not src:
        raise LaunchError(f"{SRC_ENV} not set (a Janus checkout of the same version, for its db/ migrations; "
                          "or --janus-src)")
    db = Path(src) / "db"
    if not db.is_dir():
        raise LaunchError(f"{SRC_ENV}/db not found ({db})")
    names = order_migrations(p.name for p in db.iterdir() if p.is_file())
    if not names:
        raise LaunchError(f"{SRC_ENV}/db has no migrations (*.up.sql) in {db}")
    pg = find_pg_bin(pg_bin)
    check_extensions(pg)
    return JanusInstall(aggregator=(str(b / "janus_aggregator"),), interop=interop,
                        migrations=tuple(db / n for n in names), pg_bin=pg)


# --------------------------------------------------------------------------- configs


def seconds_from_ms(ms: int) -> int:
    """Janus 0.7 takes intervals in whole seconds: ``ms`` rounded up, at least 1."""
    return max(1, math.ceil(ms / 1000))


@attrs.frozen
class Timings:
    """The knobs of :func:`janus_configs` (the module docstring says what each does)."""

    job_interval_s: int = 1
    request_timeout_s: int = 1
    connect_timeout_s: int = 1
    lease_s: int = 4
    lease_skew_s: int = 1
    max_attempts: int = 3
    retry_initial_ms: int = 100
    retry_max_ms: int = 500
    retry_max_elapsed_ms: int = 2000
    upload_batch_size: int = 100
    upload_write_delay_ms: int = 10
    max_job_size: int = 100
    task_cache_ttl_s: int = 10

    def __attrs_post_init__(self) -> None:
        if self.lease_s <= self.lease_skew_s + self.request_timeout_s:
            raise LaunchError(f"--lease-s {self.lease_s} must exceed the request timeout "
                              f"({self.request_timeout_s} s) plus the lease skew allowance ({self.lease_skew_s} s)")


@attrs.frozen
class Ports:
    """Loopback ports of one Janus stack."""

    api: int  # the interop API and DAP (janus_interop_aggregator), given by --port
    aggregator: int  # the aggregator's own DAP listener, behind the interop proxy
    postgres: int
    health: Mapping[str, int]  # /healthz of each long-running process, by name


def job_processes(role: str) -> tuple[str, ...]:
    """The long-running ``janus_aggregator`` subcommands of ``role``, in start order."""
    return ("aggregator", *LEADER_JOBS) if role == "leader" else ("aggregator",)


def _addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def janus_configs(*, role: str, host: str, ports: Ports, timings: Timings = Timings(),
                  db_url: str | None = None) -> dict[str, dict]:
    """The YAML configs (as dicts; JSON text is YAML) of every process, by process name.

    Keys are those of Janus 0.7's ``aggregator/src/binaries/*.rs`` and ``config.rs`` and
    ``interop_binaries/src/commands/janus_interop_aggregator.rs``.
    """
    t = timings
    url = db_url or f"postgres://{DB_USER}@127.0.0.1:{ports.postgres}/{DB_NAME}"

    def common(name: str) -> dict:
        return {"database": {"url": url, "check_schema_version": False},
                "health_check_listen_address": _addr("127.0.0.1", ports.health[name]),
                "logging_config": {"force_json_output": True}}

    job_driver = {
        "job_discovery_interval_s": t.job_interval_s,
        "max_concurrent_job_workers": 10,
        "worker_lease_duration_s": t.lease_s,
        "worker_lease_clock_skew_allowance_s": t.lease_skew_s,
        "maximum_attempts_before_failure": t.max_attempts,
        "http_request_connection_timeout_s": t.connect_timeout_s,
        "http_request_timeout_s": t.request_timeout_s,
        "retry_initial_interval_ms": t.retry_initial_ms,
        "retry_max_interval_ms": t.retry_max_ms,
        "retry_max_elapsed_time_ms": t.retry_max_elapsed_ms,
        "batch_aggregation_shard_count": SHARDS,
    }
    out: dict[str, dict] = {
        "key_rotator": {"database": {"url": url, "check_schema_version": False},
                        "health_check_listen_address": _addr("127.0.0.1", ports.health["key_rotator"]),
                        "logging_config": {"force_json_output": True},
                        "key_rotator": {"hpke": {}}},
        "aggregator": {**common("aggregator"),
                       "listen_address": _addr("127.0.0.1", ports.aggregator),
                       "max_upload_batch_size": t.upload_batch_size,
                       "max_upload_batch_write_delay_ms": t.upload_write_delay_ms,
                       "batch_aggregation_shard_count": SHARDS,
                       "task_counter_shard_count": SHARDS,
                       "task_cache_ttl_s": t.task_cache_ttl_s},
    }
    if role == "leader":
        out["aggregation_job_creator"] = {
            **common("aggregation_job_creator"),
            "batch_aggregation_shard_count": SHARDS,
            "tasks_update_frequency_s": t.job_interval_s,
            "aggregation_job_creation_interval_s": t.job_interval_s,
            "min_aggregation_job_size": 1,
            "max_aggregation_job_size": t.max_job_size,
        }
        out["aggregation_job_driver"] = {**common("aggregation_job_driver"), **job_driver,
                                         "task_counter_shard_count": SHARDS}
        out["collection_job_driver"] = {**common("collection_job_driver"), **job_driver,
                                        "min_collection_job_retry_delay_s": t.job_interval_s,
                                        "max_collection_job_retry_delay_s": t.job_interval_s,
                                        "collection_job_retry_delay_exponential_factor": 1.0}
    out[INTEROP] = {
        **common(INTEROP),
        "listen_address": _addr(host, ports.api),
        "dap_serving_prefix": "/",
        "aggregator_address": _addr("127.0.0.1", ports.aggregator),
        "health_check_peers": [f"http://127.0.0.1:{ports.health[n]}/healthz" for n in job_processes(role)],
    }
    return out


# --------------------------------------------------------------------------- ports


def pick_ports(role: str, api: int, *, picker: Callable[[], int] = free_port) -> Ports:
    names = ("key_rotator", *job_processes(role), INTEROP)
    taken = {api}
    got: list[int] = []
    while len(got) < len(names) + 2:
        p = picker()
        if p not in taken:
            taken.add(p)
            got.append(p)
    return Ports(api=api, aggregator=got[0], postgres=got[1], health=dict(zip(names, got[2:], strict=True)))


# --------------------------------------------------------------------------- children


_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _child_setup(parent_pid: int) -> Callable[[], None]:
    """``preexec_fn``: SIGKILL when the launcher dies (set after Popen's setuid, which would clear
    it), and do not start at all if the launcher is already gone."""

    def setup() -> None:
        if _libc is not None:
            _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(70)

    return setup


@attrs.frozen
class ChildSpec:
    """One process the launcher starts: its command, log file, environment and stop signal."""

    name: str
    argv: tuple[str, ...] = attrs.field(converter=tuple)
    log_path: Path = attrs.field(converter=Path)
    env: Mapping[str, str] = attrs.field(factory=dict)
    user: tuple[int, int] | None = None  # (uid, gid) to drop to (root only)
    stop_signal: int = signal.SIGTERM
    cwd: Path | None = None


@attrs.define(eq=False)
class Child:
    spec: ChildSpec
    process: subprocess.Popen


@attrs.define(eq=False)
class Supervisor:
    """Owner of the launcher's children. ``close()`` stops them all (never raises)."""

    stop_timeout_s: float = 2.5
    poll_s: float = 0.05
    children: list[Child] = attrs.field(factory=list)

    def start(self, spec: ChildSpec) -> Child:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(spec.log_path, "ab") as logf:
            kwargs: dict = {}
            if spec.user is not None:
                kwargs = {"user": spec.user[0], "group": spec.user[1], "extra_groups": []}
            try:
                proc = subprocess.Popen(list(spec.argv), stdin=subprocess.DEVNULL, stdout=logf,
                                        stderr=subprocess.STDOUT, env={**os.environ, **spec.env},
                                        cwd=spec.cwd, start_new_session=True,
                                        preexec_fn=_child_setup(os.getpid()), **kwargs)  # noqa: PLW1509
            except OSError as exc:
                raise SetupError(f"cannot run {spec.argv[0]}: {exc.strerror or exc}") from exc
        child = Child(spec, proc)
        self.children.append(child)
        log.info("started %s (pid %d): %s", spec.name, proc.pid, " ".join(spec.argv))
        return child

    def run_to_end(self, spec: ChildSpec, *, timeout_s: float) -> None:
        """Run a one-shot child to its end (interruptible); SetupError unless it exits 0."""
        child = self.start(spec)
        deadline = time.monotonic() + timeout_s
        while (code := child.process.poll()) is None:
            if time.monotonic() > deadline:
                self._stop([child])
                raise SetupError(f"{spec.name} still running after {timeout_s:g} s; see {spec.log_path}")
            time.sleep(self.poll_s)
        self.children.remove(child)
        if code != 0:
            raise SetupError(f"{spec.name} exited with status {code}: {last_line(spec.log_path)}")

    def check(self) -> None:
        """SetupError if a child has exited (used while waiting during start-up)."""
        for c in self.children:
            code = c.process.poll()
            if code is not None:
                raise SetupError(f"{c.spec.name} exited with status {code}: {last_line(c.spec.log_path)}")

    def wait_first_exit(self) -> Child:
        """Block until some child exits; return it (:class:`Stopped` ends the wait on a signal)."""
        while True:
            for c in self.children:
                if c.process.poll() is not None:
                    return c
            time.sleep(self.poll_s)

    def _stop(self, children: Sequence[Child]) -> None:
        for c in children:
            if c.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    c.process.send_signal(c.spec.stop_signal)
        deadline = time.monotonic() + self.stop_timeout_s
        for c in children:
            try:
                c.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) did not stop within %g s: SIGKILL", c.spec.name, c.process.pid,
                            self.stop_timeout_s)
                with contextlib.suppress(ProcessLookupError):
                    c.process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    c.process.wait(2.0)

    def close(self) -> None:
        """Stop every child at once (its stop signal, SIGKILL after ``stop_timeout_s``). SIGTERM
        and SIGINT wait meanwhile (a stop signal arriving now cannot cut the cleanup short)."""
        children, self.children = self.children, []
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            self._stop(children)
        except Exception:
            log.exception("stopping children")
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "children", None):
            warnings.warn("Supervisor collected with children running; stopping them", ResourceWarning,
                          stacklevel=1)
            self.close()


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """The first SIGTERM / SIGINT raises :class:`Stopped` in the main thread; later ones are
    ignored (so they cannot break the cleanup). Restores the previous handlers on exit."""
    seen = False

    def handler(signum: int, frame: object) -> None:
        nonlocal seen
        if not seen:
            seen = True
            raise Stopped(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def supervise(sup: Supervisor) -> int:
    """Wait until a child exits (log which, return 1) or a stop signal (return 0)."""
    try:
        c = sup.wait_first_exit()
    except Stopped as s:
        log.info("stopping on %s", signal.Signals(s.signum).name)
        return 0
    log.error("%s exited with status %s: %s", c.spec.name, c.process.returncode, last_line(c.spec.log_path))
    return 1


def run_children(specs: Sequence[ChildSpec], *, stop_timeout_s: float = 2.5) -> int:
    """Start ``specs`` and supervise them (what :func:`main` does once the stack is set up)."""
    with stop_signals():
        try:
            with Supervisor(stop_timeout_s=stop_timeout_s) as sup:
                for spec in specs:
                    sup.start(spec)
                return supervise(sup)
        except Stopped:
            return 0


# --------------------------------------------------------------------------- PostgreSQL


def reachable_by(path: Path, uid: int, gids: Iterable[int]) -> bool:
    """Whether user ``uid`` (groups ``gids``) may traverse every directory down to ``path``."""
    gids = set(gids)
    p = Path(os.path.abspath(path))
    for d in [*reversed(p.parents), p]:
        try:
            st = d.stat()
        except OSError:
            return False
        if uid == 0:
            continue
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _pg_user() -> tuple[int, int, str] | None:
    """(uid, gid, name) to run PostgreSQL as when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in filter(None, (os.environ.get(PG_USER_ENV), "postgres", "nobody")):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        if pw.pw_uid != 0:
            return pw.pw_uid, pw.pw_gid, name
    raise LaunchError(f"running as root and no unprivileged user for PostgreSQL (set {PG_USER_ENV})")


@attrs.define(eq=False)
class Cluster:
    """A throw-away PostgreSQL cluster: ``root`` holds ``data/`` and the socket."""

    root: Path
    pg_bin: Path
    port: int
    state_dir: Path
    user: tuple[int, int] | None
    socket_dir: str = ""

    @classmethod
    def place(cls, state_dir: Path, pg_bin: Path, port: int) -> Cluster:
        """A fresh cluster directory: ``state_dir/pg``, or one under the temp dir when the
        PostgreSQL user (we are root) cannot reach ``state_dir``."""
        who = _pg_user()
        user = None if who is None else (who[0], who[1])
        root = state_dir / "pg"
        if who is not None and not reachable_by(state_dir, who[0], [who[1]]):
            root = Path(tempfile.mkdtemp(prefix="janus-pg-"))
            log.info("user %s cannot reach %s: the cluster goes to %s", who[2], state_dir, root)
        elif root.exists():  # left by a launcher that was killed
            shutil.rmtree(root)
        root.mkdir(mode=0o700, exist_ok=True)
        (root / "data").mkdir(mode=0o700)
        if user is not None:
            for d in (root, root / "data"):
                os.chown(d, *user)
        sock = str(root) if len(f"{root}/.s.PGSQL.{port}") <= _MAX_SOCKET_PATH else ""
        return cls(root=root, pg_bin=pg_bin, port=port, state_dir=state_dir, user=user, socket_dir=sock)

    def initdb_spec(self) -> ChildSpec:
        return ChildSpec("initdb", (str(self.pg_bin / "initdb"), "-D", str(self.root / "data"), "-U", DB_USER,
                                    "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"),
                         self.state_dir / "initdb.log", user=self.user, cwd=self.root)

    def server_spec(self) -> ChildSpec:
        settings = {"listen_addresses": "127.0.0.1", "unix_socket_directories": self.socket_dir,
                    "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                    "shared_buffers": "32MB", "max_connections": "200"}
        argv = [str(self.pg_bin / "postgres"), "-D", str(self.root / "data"), "-p", str(self.port)]
        for k, v in settings.items():
            argv += ["-c", f"{k}={v}"]
        # SIGQUIT: immediate shutdown; the cluster is thrown away anyway.
        return ChildSpec("postgres", tuple(argv), self.state_dir / "postgres.log", user=self.user,
                         stop_signal=signal.SIGQUIT, cwd=self.root)

    def wait_ready(self, sup: Supervisor, *, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            sup.check()
            r = subprocess.run([str(self.pg_bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port),
                                "-U", DB_USER, "-t", "1"], stdin=subprocess.DEVNULL, check=False)
            if r.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise SetupError(f"PostgreSQL not accepting connections on 127.0.0.1:{self.port} after "
                                 f"{timeout_s:g} s; see {self.state_dir / 'postgres.log'}")
            time.sleep(0.1)

    def psql(self, *args: str, db: str = DB_NAME) -> None:
        cmd = [str(self.pg_bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
               str(self.port), "-U", DB_USER, "-d", db, *args]
        with open(self.state_dir / "migrations.log", "ab") as logf:
            logf.write(("$ " + " ".join(cmd) + "\n").encode())
            logf.flush()
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.PIPE, check=False,
                               env={**os.environ, "PGCONNECT_TIMEOUT": "10"})
            logf.write(r.stderr)
        if r.returncode != 0:
            err = r.stderr.decode("utf-8", "replace").strip().splitlines()
            raise SetupError(f"psql {' '.join(args)} failed: {err[-1] if err else 'status ' + str(r.returncode)}")

    def create_schema(self, migrations: Sequence[Path]) -> None:
        self.psql("-c", f"CREATE DATABASE {DB_NAME}", db="postgres")
        texts = [m.read_text(encoding="utf-8") for m in migrations]
        for ext in extensions_to_create(texts):
            self.psql("-c", f"CREATE EXTENSION IF NOT EXISTS {ext}")
        for m, text in zip(migrations, texts, strict=True):
            if text.lstrip().startswith("-- no-transaction"):
                self.psql("-f", str(m))
            else:
                self.psql("--single-transaction", "-f", str(m))
        log.info("database %s: %d migrations applied (%s .. %s)", DB_NAME, len(migrations), migrations[0].name,
                 migrations[-1].name)

    def remove(self) -> None:
        try:
            shutil.rmtree(self.root)
        except FileNotFoundError:
            pass
        except OSError:
            log.exception("removing the cluster %s", self.root)


# --------------------------------------------------------------------------- main


def wait_port(host: str, port: int, sup: Supervisor, *, timeout_s: float, what: str) -> None:
    """Until ``host:port`` accepts a TCP connection; SetupError if a child exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        sup.check()
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        if time.monotonic() > deadline:
            raise SetupError(f"{what} not listening on {_addr(host, port)} after {timeout_s:g} s")
        time.sleep(0.05)


def _write_configs(config_dir: Path, configs: Mapping[str, dict]) -> dict[str, Path]:
    config_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, cfg in configs.items():
        p = config_dir / f"{name}.yaml"
        p.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        out[name] = p
    return out


@attrs.define(eq=False)
class JanusStack:
    """Owner of one role's stack: the children (via :class:`Supervisor`) and the cluster.
    ``close()`` stops the children, then removes the cluster directory (unless ``keep_cluster``)."""

    role: str
    host: str
    port: int
    state_dir: Path
    install: JanusInstall
    timings: Timings
    rust_log: str = "info"
    keep_cluster: bool = False
    sup: Supervisor = attrs.field(factory=Supervisor)
    cluster: Cluster | None = None

    def start(self) -> None:
        """Bring everything up, in order; SetupError if a step fails."""
        ports = pick_ports(self.role, self.port)
        self.cluster = cluster = Cluster.place(self.state_dir, self.install.pg_bin, ports.postgres)
        self.sup.run_to_end(cluster.initdb_spec(), timeout_s=120)
        self.sup.start(cluster.server_spec())
        cluster.wait_ready(self.sup)
        cluster.create_schema(self.install.migrations)
        paths = _write_configs(self.state_dir / "config", janus_configs(role=self.role, host=self.host, ports=ports,
                                                                        timings=self.timings))
        env = {"DATASTORE_KEYS": secrets.token_urlsafe(16).rstrip("="), "RUST_LOG": self.rust_log}

        def spec(name: str, prefix: tuple[str, ...]) -> ChildSpec:
            # janus_interop_aggregator's server does not watch the SIGTERM stopper (it would run
            # on until SIGKILL); SIGINT, which no Janus binary handles, ends it at once.
            return ChildSpec(name, (*prefix, "--config-file", str(paths[name])), self.state_dir / f"{name}.log",
                             env=env, stop_signal=signal.SIGINT if name == INTEROP else signal.SIGTERM)

        agg = self.install.aggregator
        self.sup.run_to_end(spec("key_rotator", (*agg, "key_rotator")), timeout_s=60)
        for name in job_processes(self.role):
            self.sup.start(spec(name, (*agg, name)))
        wait_port("127.0.0.1", ports.aggregator, self.sup, timeout_s=60, what="janus aggregator")
        self.sup.start(spec(INTEROP, self.install.interop))
        wait_port(self.host, self.port, self.sup, timeout_s=60, what=INTEROP)
        log.info("janus %s: interop API and DAP on http://%s/ (PostgreSQL on 127.0.0.1:%d)", self.role,
                 _addr(self.host, self.port), ports.postgres)

    def close(self) -> None:
        try:
            self.sup.close()
        finally:
            if self.cluster is not None and not self.keep_cluster:
                self.cluster.remove()
            self.cluster = None

    def __enter__(self) -> JanusStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _loopback(host: str) -> str:
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"{host!r} is not a loopback address (the test API takes secrets "
                                         "without authentication)")
    return host


def _port(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if not 0 < v < 65536:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r}")
    return v


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v <= 0:
        raise argparse.ArgumentTypeError(f"not a positive integer: {text!r}")
    return v


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{PROG}: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=f"python -m {PROG}", description="Run a Janus 0.7 (DAP-09) build as one interop "
                "Aggregator: a private PostgreSQL, the janus_aggregator processes and janus_interop_aggregator, "
                "all on loopback (docs/janus.md).")
    p.add_argument("--role", required=True, choices=["leader", "helper"])
    p.add_argument("--host", type=_loopback, default="127.0.0.1", help="interop API address (loopback only)")
    p.add_argument("--port", type=_port, required=True, help="interop API and DAP port")
    p.add_argument("--state-dir", type=Path, required=True, help="configs, logs and the PostgreSQL cluster")
    p.add_argument("--janus-bin-dir", default=None, help=f"default ${BIN_ENV}")
    p.add_argument("--janus-src", default=None, help=f"default ${SRC_ENV} (its db/ holds the migrations)")
    p.add_argument("--pg-bin", default=None, help=f"default ${PG_ENV}, else the newest /usr/lib/postgresql/*/bin")
    p.add_argument("--job-interval-ms", type=_positive, default=1000,
                   help="job creation / discovery interval; Janus 0.7 takes whole seconds (rounded up; default 1000)")
    p.add_argument("--request-timeout-s", type=_positive, default=1, help="Leader->Helper request timeout (default 1)")
    p.add_argument("--lease-s", type=_positive, default=4, help="job step lease; a failed step is retried after it "
                   "(default 4)")
    p.add_argument("--max-attempts", type=_positive, default=3, help="job steps before a job is abandoned (default 3)")
    p.add_argument("--max-job-size", type=_positive, default=100, help="reports per aggregation job (default 100)")
    p.add_argument("--rust-log", default=os.environ.get("RUST_LOG", "info"), help="Janus log filter (default info)")
    p.add_argument("--keep-cluster", action="store_true", help="do not delete the PostgreSQL cluster on exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        inst = find_install(bin_dir=args.janus_bin_dir or os.environ.get(BIN_ENV),
                            src=args.janus_src or os.environ.get(SRC_ENV),
                            pg_bin=args.pg_bin or os.environ.get(PG_ENV))
        timings = Timings(job_interval_s=seconds_from_ms(args.job_interval_ms),
                          request_timeout_s=args.request_timeout_s, lease_s=args.lease_s,
                          max_attempts=args.max_attempts, max_job_size=args.max_job_size)
        _pg_user()
    except LaunchError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s janus-{args.role} %(levelname)s %(message)s")
    state_dir = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    with stop_signals():
        try:
            with JanusStack(role=args.role, host=args.host, port=args.port, state_dir=state_dir, install=inst,
                            timings=timings, rust_log=args.rust_log, keep_cluster=args.keep_cluster) as stack:
                try:
                    stack.start()
                except SetupError as exc:
                    log.error("setup failed: %s", exc)
                    return 1
                return supervise(stack.sup)
        except Stopped as s:
            log.info("stopped on %s during start-up", signal.Signals(s.signum).name)
            return 0


if __name__ == "__main__":
    sys.exit(main())
