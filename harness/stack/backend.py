"""Backends start and stop role processes; everything else talks to roles over HTTP.

The seam is small on purpose::

    class Backend(Protocol):
        name: str
        peer_host: str                                  # hostname roles use for each other
        def start(self, role, entry) -> str: ...        # spawn; return the interop API base URL
        def check(self, role) -> None: ...              # raise BackendError if it died
        def logs(self, role) -> list[Path]: ...         # log files (appended to while running)
        def stop(self, role) -> None: ...
        def close(self) -> None: ...                    # stop everything; never raises

A backend whose roles cannot reach the harness's addresses (the docker backend) adds::

        def prepare(self, entries) -> None: ...         # before any start: images, network
        def hostname(self, role) -> str: ...            # endpoint_for_task's hostname
        def peer_url(self, role) -> str: ...            # the role's URL as other roles see it
        def fault_proxy(self, upstreams, *, workdir, plan, save_flows): ...  # a FaultProxy look-alike

and :class:`~harness.run.Stack` uses them when present. Readiness is not the backend's
business: the Stack polls ``/internal/test/ready``.
:class:`LocalBackend` runs ``images.toml`` ``command`` entries as children in their own
process group (a terminal's Ctrl-C reaches the harness only, which then stops them in order)
with stdout + stderr in ``<state_dir>/role.log``. :class:`harness.stack.docker.DockerBackend`
runs ``image`` entries as containers (docs/docker.md). :func:`get_backend` maps a name to a
backend.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Protocol

import attrs

from harness.errors import BackendError, UsageError
from harness.stack.images import REPO, ImageEntry
from harness.stack.lifetime import close_at_exit, exit_text, forget_child, last_line, spawn
from harness.stack.netns import CONTROL_PORT, LINK_PORTS, ROLE_PORT, Topology, missing_requirement
from harness.stack.ports import free_port

__all__ = ["BACKENDS", "NETWORKS", "Backend", "LocalBackend", "NetnsBackend", "RoleProc", "free_port", "get_backend"]

log = logging.getLogger(__name__)
BACKENDS = ("local", "docker")
#: how the roles are networked: all on loopback (default), or a namespace each (docs/network.md)
NETWORKS = ("loopback", "netns")


class Backend(Protocol):
    name: str
    peer_host: str

    def start(self, role: str, entry: ImageEntry) -> str: ...

    def check(self, role: str) -> None: ...

    def logs(self, role: str) -> list[Path]: ...

    def stop(self, role: str) -> None: ...

    def close(self) -> None: ...


@attrs.define
class RoleProc:
    role: str
    entry: ImageEntry
    port: int
    state_dir: Path
    process: subprocess.Popen
    log_file: IO[bytes]

    @property
    def log_path(self) -> Path:
        return self.state_dir / "role.log"


@attrs.define(eq=False)
class LocalBackend:
    """Runs roles as local processes from ``command`` entries. Owner: ``close()`` stops all."""

    workdir: Path = attrs.field(converter=Path)
    name: str = "local"
    peer_host: str = "127.0.0.1"
    stop_timeout_s: float = 5.0
    procs: dict[str, RoleProc] = attrs.field(factory=dict)
    network: str = "loopback"

    def __attrs_post_init__(self) -> None:
        close_at_exit(self)

    def _placement(self, role: str) -> tuple[str, int]:
        """Where ``role`` listens: (host, port)."""
        return "127.0.0.1", free_port()

    def _wrap(self, role: str, cmd: list[str]) -> list[str]:
        """The command line that runs ``cmd`` for ``role``."""
        return cmd

    def start(self, role: str, entry: ImageEntry) -> str:
        if entry.command is None:
            raise UsageError(f"{role} {entry.name!r} is a container image ({entry.image}); it needs the docker "
                             "backend (--backend docker, docs/docker.md) or a local entry, e.g. reference")
        if role in self.procs:
            raise BackendError("already started", role=role)
        host, port = self._placement(role)
        state_dir = self.workdir / role
        state_dir.mkdir(parents=True, exist_ok=True)
        cmd = self._wrap(role, entry.render(python=sys.executable, port=str(port), host=host,
                                            state_dir=str(state_dir), repo=str(REPO)))
        logf = open(state_dir / "role.log", "ab")  # noqa: SIM115 - owned by RoleProc, closed in stop()
        env = {**os.environ, **entry.env, "PYTHONUNBUFFERED": "1"}
        try:
            proc = spawn(cmd, what=f"{role} {entry.name}", cwd=REPO, stdin=subprocess.DEVNULL, stdout=logf,
                         stderr=subprocess.STDOUT, env=env)
        except OSError as exc:
            logf.close()
            raise BackendError(f"cannot run {cmd[0]!r}: {exc.strerror}", role=role) from exc
        self.procs[role] = RoleProc(role, entry, port, state_dir, proc, logf)
        return f"http://{host}:{port}/"

    def pid(self, role: str) -> int:
        return self.procs[role].process.pid

    def check(self, role: str) -> None:
        rp = self.procs.get(role)
        if rp is None:
            raise BackendError("not started", role=role)
        code = rp.process.poll()
        if code is not None:
            raise BackendError(f"{rp.entry.name} {exit_text(code)}; last log line: {last_line(rp.log_path)}",
                               role=role, log_tail=_tail(rp.log_path))

    def logs(self, role: str) -> list[Path]:
        rp = self.procs.get(role)
        if rp is None:
            return []
        return sorted(p for p in rp.state_dir.glob("*.log") if p.is_file())

    def stop(self, role: str) -> None:
        rp = self.procs.pop(role, None)
        if rp is None:
            return
        proc = rp.process
        try:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(self.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(self.stop_timeout_s)
            else:  # the leader may have left children in its group
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
        except Exception:
            log.exception("stopping %s (pid %s)", role, proc.pid)
        finally:
            forget_child(proc.pid)
            with contextlib.suppress(OSError):
                rp.log_file.close()

    def close(self) -> None:
        """Stop every role (reverse start order). Never raises."""
        for role in reversed(list(self.procs)):
            self.stop(role)

    def __del__(self) -> None:
        if getattr(self, "procs", None):
            warnings.warn("LocalBackend collected with roles running; stopping them", ResourceWarning, stacklevel=1)
            self.close()


@attrs.define(eq=False)
class NetnsBackend(LocalBackend):
    """:class:`LocalBackend` with each role (and the fault proxy) in its own network namespace,
    linked through a router namespace (:class:`harness.stack.netns.Topology`): ``{host}`` is the
    role's address there, every role listens on port 8080 of its namespace. Needs root or
    CAP_NET_ADMIN. ``close()`` also removes the namespaces (and everything in them)."""

    network: str = "netns"
    topology: Topology | None = None
    #: owned helpers that live in the topology (the NFQUEUE worker of harness.stack.netfaults)
    helpers: dict[str, object] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        why = missing_requirement()
        if why is not None:
            raise UsageError(why)
        super().__attrs_post_init__()

    def prepare(self, entries: object = None) -> None:
        if self.topology is None:
            self.topology = Topology()
            self.topology.create()

    def _topo(self) -> Topology:
        if self.topology is None:
            self.prepare()
        assert self.topology is not None
        return self.topology

    def _placement(self, role: str) -> tuple[str, int]:
        return self._topo().addr(role), ROLE_PORT

    def _wrap(self, role: str, cmd: list[str]) -> list[str]:
        return [*self._topo().exec_prefix(role), *cmd]

    def hostname(self, role: str) -> str:
        return self._topo().addr(role)

    def peer_url(self, role: str) -> str:
        return f"http://{self._topo().addr(role)}:{ROLE_PORT}"

    def fault_proxy(self, upstreams: Mapping[str, str], *, workdir: Path, plan: Any, save_flows: bool = True) -> Any:
        """The fault proxy in its own namespace, listening on its address there."""
        from harness.stack.proxy import FaultProxy
        topo = self._topo()
        return FaultProxy(upstreams, workdir=workdir, plan=plan, save_flows=save_flows,
                          listen_host=topo.addr("proxy"), command_prefix=topo.exec_prefix("proxy"),
                          port_picker=lambda what: CONTROL_PORT if what == "control" else LINK_PORTS[what])

    def close(self) -> None:
        """Stop every role and helper, then remove the namespaces. Never raises."""
        super().close()
        for name, helper in list(self.helpers.items()):
            try:
                helper.close()  # type: ignore[attr-defined]
            except Exception:
                log.exception("closing %s", name)
        self.helpers.clear()
        if self.topology is not None:
            self.topology.destroy()


def _tail(path: Path, n: int = 4000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-n:].decode("utf-8", "replace")


def get_backend(name: str, workdir: Path, *, pull: bool = False, network: str = "loopback") -> Backend:
    """``local`` or ``docker``; ``pull`` (docker only): pull images missing from the engine;
    ``network`` ``netns`` (local only): a namespace per role (:class:`NetnsBackend`)."""
    if network not in NETWORKS:
        raise UsageError(f"unknown network {network!r} (known: {', '.join(NETWORKS)})")
    if network == "netns":
        if name != "local":
            raise UsageError("--network netns runs local roles in namespaces; it cannot be combined with "
                             f"--backend {name}")
        return NetnsBackend(workdir)
    if name == "local":
        return LocalBackend(workdir)
    if name == "docker":
        from harness.stack.docker import DockerBackend
        return DockerBackend(workdir, pull=pull)
    raise UsageError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
