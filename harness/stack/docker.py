"""The docker backend: every role, and the fault proxy, in a container on a private network.

One :class:`DockerBackend` per :class:`~harness.run.Stack` (docs/docker.md)::

    network   faultrun-<run>                 a fresh bridge network for this run
    leader    faultrun-<run>-leader          alias ``leader``     image from images.toml
    helper    faultrun-<run>-helper          alias ``helper``
    client    faultrun-<run>-client          alias ``client``
    collector faultrun-<run>-collector       alias ``collector``
    proxy     faultrun-<run>-faultproxy      alias ``faultproxy`` the reference image running
                                             mitmdump + our addon (``proxy_image``)

Roles reach each other by alias (``http://faultproxy:8081`` is the Leader as the Client sees
it, ``http://helper:8080`` the Helper as the proxy sees it). The harness reaches each role's
interop API, and the proxy's control channel, on ports published on the host's 127.0.0.1
only; nothing is published on another address. The proxy's directory
(``<stack>/proxy``: ``history.jsonl``, ``flows.mitm``, ``control.token``) is bind-mounted
into its container, which runs as the calling user, so the harness reads the files it would
read from a local proxy.

Logs: each container's stdout + stderr is streamed into ``<stack>/<role>/container.log``
while it runs (the per-scenario log slices come from there); when a role stops, its
``/logs`` directory is copied to ``<stack>/<role>/logs/``. Every container and the network
carry the label ``dap-faultrun.run=<run>``; :meth:`DockerBackend.close` removes them on
success, failure, Ctrl-C / SIGTERM and timeouts, and :func:`remove_leftovers` removes what a
killed harness left behind.

The engine is whatever ``DOCKER_HOST`` (and ``DOCKER_TLS_VERIFY`` / ``DOCKER_CERT_PATH``) names,
as for the ``docker`` CLI; it must run on this machine (bind mount, ports on 127.0.0.1).
Images are never pulled unless ``pull=True`` (``faultrun --pull``), and then only the ones
missing locally.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import signal
import tarfile
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from faults.plan import Plan, dump_plan
from faults.vocabulary import CLIENT_LEADER, COLLECTOR_LEADER, LEADER_HELPER
from harness.errors import BackendError, ControlError, ProxyStartError, UsageError
from harness.stack.control import ControlClient
from harness.stack.images import ImageEntry
from harness.stack.lifetime import OWNER_LABEL, close_at_exit, forget_at_exit, owner_alive, owner_labels
from harness.stack.proxy import ProxyFiles, faultproxy_args

__all__ = ["DEFAULT_PROXY_IMAGE", "LABEL", "ContainerFaultProxy", "DockerBackend", "connect", "engine_is_local",
           "remove_leftovers"]

log = logging.getLogger(__name__)

LABEL = "dap-faultrun.run"
ROLE_LABEL = "dap-faultrun.role"
DEFAULT_PROXY_IMAGE = "dap-faultrun:local"
PROXY_IMAGE_ENV = "FAULTRUN_PROXY_IMAGE"
PROXY_ALIAS = "faultproxy"
PROXY_LINK_PORTS = {CLIENT_LEADER: 8081, COLLECTOR_LEADER: 8082, LEADER_HELPER: 8083}
PROXY_CONTROL_PORT = 8090
PROXY_MOUNT = "/faultrun"
PROXY_SCRIPT = "/opt/dap-faultrun/src/proxy_addons/faultproxy.py"  # where the Dockerfile puts it
_ERRNO_HINTS = ("No such file or directory", "Connection refused", "Permission denied", "timed out",
                "Name or service not known", "Temporary failure in name resolution", "certificate verify failed")


def _docker() -> Any:
    try:
        import docker
    except ImportError as exc:  # a dependency (pyproject.toml); only a broken install lacks it
        raise UsageError("--backend docker needs the 'docker' Python package (pip install docker); "
                         "run bash scripts/bootstrap") from exc
    return docker


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    for hint in _ERRNO_HINTS:
        if hint in text:
            return hint
    explanation = getattr(exc, "explanation", None)
    if explanation:
        text = " ".join(str(explanation).split())
    return text[:limit] + ("..." if len(text) > limit else "")


def describe_host() -> str:
    host = os.environ.get("DOCKER_HOST", "")
    return f"DOCKER_HOST={host}" if host else "the default engine socket (DOCKER_HOST unset)"


def engine_is_local(docker_host: str | None = None) -> bool:
    """Does ``DOCKER_HOST`` name an engine on this machine (a socket, or tcp to loopback)?"""
    host = os.environ.get("DOCKER_HOST", "") if docker_host is None else docker_host
    if not host or host.startswith(("unix://", "npipe://", "fd://")) or host.startswith("/"):
        return True
    if host.startswith(("tcp://", "http://", "https://", "ssh://")):
        name = urlsplit(host).hostname or ""
        return not host.startswith("ssh://") and (name in ("localhost", "::1") or name.startswith("127."))
    return True  # not a URL docker understands: docker.from_env says so


def connect(timeout_s: float = 60.0) -> Any:
    """A ``docker.DockerClient`` for ``DOCKER_HOST``, checked with a ping. One-line errors."""
    docker = _docker()
    def unreachable(exc: BaseException) -> BackendError:
        return BackendError(f"--backend docker: no Docker engine answers at {describe_host()}: {_one_line(exc)} "
                            "(start dockerd, or point DOCKER_HOST at one; docs/docker.md)")

    try:
        client = docker.from_env(timeout=int(timeout_s))  # asks the engine for its API version
    except docker.errors.DockerException as exc:
        if "fetching server API version" in str(exc):
            raise unreachable(exc) from exc
        raise UsageError(f"--backend docker: {describe_host()}: {_one_line(exc)}") from exc
    try:
        client.ping()
    except Exception as exc:  # requests / urllib3 / docker errors: the engine is not there
        with contextlib.suppress(Exception):
            client.close()
        raise unreachable(exc) from exc
    return client


def _split_ref(ref: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repo, tag); the tag defaults to ``latest`` (a pull never takes every tag)."""
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = ref.rsplit(":", 1)
        return repo, tag
    return ref, "latest"


def ensure_image(client: Any, ref: str, *, pull: bool, what: str) -> None:
    """The image must be present; with ``pull`` a missing one is pulled. One-line errors."""
    docker = _docker()
    try:
        client.images.get(ref)
        return
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:
        raise BackendError(f"{what}: inspecting image {ref}: {_one_line(exc)}") from exc
    if ref.split(":")[0] == DEFAULT_PROXY_IMAGE.split(":")[0]:  # built here, in no registry: never pulled
        raise UsageError(f"{what}: image {ref} is not on the Docker engine; build it from this repository: "
                         f"docker build -t {ref} . (docs/docker.md)")
    if not pull:
        raise UsageError(f"{what}: image {ref} is not on the Docker engine; pass --pull to pull it")
    repo, tag = _split_ref(ref)
    log.warning("pulling %s", ref)
    try:
        client.images.pull(repo, tag=tag)
    except docker.errors.DockerException as exc:
        raise BackendError(f"{what}: pulling {ref} failed: {_one_line(exc)}") from exc


def remove_leftovers(client: Any, run_id: str | None = None, *, orphans_only: bool = False) -> list[str]:
    """Remove containers and networks labelled by faultrun (one run, or all; ``orphans_only``:
    only those whose owning harness process is gone); return their names."""
    label = f"{LABEL}={run_id}" if run_id else LABEL

    def doomed(obj: Any) -> bool:
        owner = (getattr(obj, "labels", None) or obj.attrs.get("Labels") or {}).get(OWNER_LABEL)
        return not orphans_only or (owner is not None and not owner_alive(owner))

    removed = []
    for c in client.containers.list(all=True, filters={"label": label}):
        if doomed(c):
            with contextlib.suppress(Exception):
                c.remove(force=True, v=True)
                removed.append(c.name)
    for n in client.networks.list(filters={"label": label}):
        if doomed(n):
            with contextlib.suppress(Exception):
                n.remove()
                removed.append(n.name)
    return removed


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT / SIGTERM while cleaning up (a second Ctrl-C must not leave containers)."""
    old = None
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(Exception):
            old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        if old is not None:  # the previous mask: nesting-safe; a held signal is delivered now
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


@attrs.define(eq=False)
class _Role:
    role: str
    entry: ImageEntry
    container: Any
    dir: Path
    host_port: int
    log_thread: threading.Thread | None = None

    @property
    def container_log(self) -> Path:
        return self.dir / "container.log"


def _stream_logs(container: Any, path: Path) -> threading.Thread:
    """Append the container's stdout + stderr to ``path`` until it stops (a daemon thread)."""

    def pump() -> None:
        try:
            with open(path, "ab", buffering=0) as fh:
                for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
                    fh.write(chunk)
        except Exception as exc:  # the container went away: nothing more to read
            log.debug("log stream of %s ended: %s", container.name, exc)

    t = threading.Thread(target=pump, name=f"logs-{container.name}", daemon=True)
    t.start()
    return t


def _tail(path: Path, n: int = 4000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-n:].decode("utf-8", "replace")


@attrs.define(eq=False)
class DockerBackend:
    """Runs roles as containers on a fresh bridge network. Owner: ``close()`` removes all."""

    workdir: Path = attrs.field(converter=Path)
    pull: bool = False
    proxy_image: str = attrs.field(factory=lambda: os.environ.get(PROXY_IMAGE_ENV) or DEFAULT_PROXY_IMAGE)
    name: str = "docker"
    peer_host: str = ""  # per role: hostname(role)
    stop_timeout_s: float = 5.0
    run_id: str = attrs.field(factory=lambda: secrets.token_hex(4))
    client: Any = None
    network: Any = None
    roles: dict[str, _Role] = attrs.field(factory=dict)
    proxy: ContainerFaultProxy | None = None
    _closed: bool = False

    def __attrs_post_init__(self) -> None:
        close_at_exit(self)  # last resort: an interpreter exit never leaves containers behind

    @property
    def prefix(self) -> str:
        return f"faultrun-{self.run_id}"

    @property
    def labels(self) -> dict[str, str]:
        return {LABEL: self.run_id, **owner_labels()}

    # --- set-up --------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self.client is None:
            if not engine_is_local():
                raise UsageError(f"--backend docker: {describe_host()} names another machine; the docker backend "
                                 "needs an engine on this one (it bind-mounts the proxy's directory and reaches "
                                 "published ports on 127.0.0.1; docs/docker.md)")
            self.client = connect()
        return self.client

    def prepare(self, entries: Mapping[str, ImageEntry]) -> None:
        """Before any container: every entry has a present image (or --pull), and the network exists."""
        for role, entry in entries.items():
            if entry.image is None:
                raise UsageError(f"{role} {entry.name!r} has no 'image' in images.toml, so the docker backend cannot "
                                 "run it (use --backend local, or add an image)")
        client = self._connect()
        swept = remove_leftovers(client, orphans_only=True)  # a harness killed before it could clean up
        if swept:
            log.warning("removed containers and networks of a faultrun that died: %s", ", ".join(swept))
        for ref in dict.fromkeys([*(e.image for e in entries.values()), self.proxy_image]):
            what = ", ".join(f"{r} {e.name!r}" for r, e in entries.items() if e.image == ref) or "fault proxy"
            ensure_image(client, ref, pull=self.pull, what=what)  # type: ignore[arg-type]
        self._network()

    def _network(self) -> Any:
        if self.network is None:
            client = self._connect()
            try:
                self.network = client.networks.create(self.prefix, driver="bridge", labels=self.labels)
            except Exception as exc:
                raise BackendError(f"creating network {self.prefix}: {_one_line(exc)}") from exc
        return self.network

    # --- the Backend protocol ------------------------------------------------------------------

    def hostname(self, role: str) -> str:
        """The role's hostname on the run's network (its alias)."""
        return role

    def peer_url(self, role: str) -> str:
        """The role's base URL as other containers reach it."""
        rp = self.roles.get(role)
        port = rp.entry.port if rp is not None else 8080
        return f"http://{role}:{port}/"

    def run_container(self, role: str, image: str, *, alias: str, command: list[str] | None = None,
                      entrypoint: list[str] | None = None, env: Mapping[str, str] | None = None,
                      publish: int | None = None, **kw: Any) -> Any:
        client = self._connect()
        net = self._network()
        docker = _docker()
        try:
            return client.containers.run(
                image, command=command, entrypoint=entrypoint, name=f"{self.prefix}-{alias}", detach=True,
                environment=dict(env or {}), labels={**self.labels, ROLE_LABEL: role},
                network=net.name,
                networking_config={net.name: client.api.create_endpoint_config(aliases=[alias])},
                ports={f"{publish}/tcp": ("127.0.0.1", None)} if publish else None, **kw)
        except docker.errors.ImageNotFound as exc:
            raise UsageError(f"{role}: image {image} is not on the Docker engine; pass --pull to pull it") from exc
        except docker.errors.DockerException as exc:
            raise BackendError(f"starting container {self.prefix}-{alias} ({image}): {_one_line(exc)}",
                               role=role) from exc

    def published_port(self, container: Any, port: int, role: str, log_path: Path | None = None) -> int:
        deadline = time.monotonic() + 10
        while True:
            container.reload()
            binding = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{port}/tcp")
            if binding:
                return int(binding[0]["HostPort"])
            if container.status not in ("created", "running") or time.monotonic() > deadline:
                tail = _tail(log_path) if log_path else ""
                last = tail.strip().splitlines()[-1] if tail.strip() else "no output"
                raise BackendError(f"container {container.name} is {container.status}, port {port} not published: "
                                   f"{last}", role=role, log_tail=tail)
            time.sleep(0.05)

    def start(self, role: str, entry: ImageEntry) -> str:
        if entry.image is None:
            raise UsageError(f"{role} {entry.name!r} has no 'image' in images.toml, so the docker backend cannot "
                             "run it (use --backend local, or add an image)")
        if role in self.roles:
            raise BackendError("already started", role=role)
        d = self.workdir / role
        d.mkdir(parents=True, exist_ok=True)
        container = self.run_container(role, entry.image, alias=role,
                                       command=list(entry.args) if entry.args is not None else None,
                                       env=entry.env, publish=entry.port)
        rp = _Role(role, entry, container, d, 0)
        self.roles[role] = rp
        rp.log_thread = _stream_logs(container, rp.container_log)
        rp.host_port = self.published_port(container, entry.port, role, rp.container_log)
        return f"http://127.0.0.1:{rp.host_port}/"

    def check(self, role: str) -> None:
        rp = self.roles.get(role)
        if rp is None:
            raise BackendError("not started", role=role)
        try:
            rp.container.reload()
        except Exception as exc:
            raise BackendError(f"container {rp.container.name}: {_one_line(exc)}", role=role) from exc
        if rp.container.status != "running":
            code = rp.container.attrs.get("State", {}).get("ExitCode")
            time.sleep(0.1)  # let the log stream catch up
            tail = _tail(rp.container_log)
            last = tail.strip().splitlines()[-1] if tail.strip() else "no output"
            raise BackendError(f"{rp.entry.name} container {rp.container.status} (exit status {code}): {last}",
                               role=role, log_tail=tail)

    def logs(self, role: str) -> list[Path]:
        rp = self.roles.get(role)
        if rp is None:
            return []
        return [rp.container_log]

    def copy_logs(self, container: Any, dest: Path) -> None:
        """Copy the container's ``/logs`` into ``dest`` (absent /logs: nothing)."""
        docker = _docker()
        try:
            chunks, _stat = container.get_archive("/logs")
        except docker.errors.NotFound:
            return
        with tempfile.SpooledTemporaryFile(max_size=8 << 20) as buf:
            for chunk in chunks:
                buf.write(chunk)
            buf.seek(0)
            dest.mkdir(parents=True, exist_ok=True)
            with tarfile.open(fileobj=buf, mode="r|") as tf:
                for member in tf:
                    name = member.name.split("/", 1)[1] if "/" in member.name else ""
                    if not name or not (member.isfile() or member.isdir()):
                        continue
                    target = dest / name
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    if ".." in Path(name).parts:
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tf.extractfile(member)
                    if src is not None:
                        with open(target, "wb") as out:
                            while block := src.read(1 << 16):
                                out.write(block)

    def _retire(self, container: Any, dest: Path | None, thread: threading.Thread | None, what: str) -> None:
        """Stop, copy /logs out, remove. Never raises."""
        docker = _docker()
        try:
            with contextlib.suppress(docker.errors.NotFound):
                container.stop(timeout=int(self.stop_timeout_s))
        except Exception:
            log.warning("stopping %s", what, exc_info=True)
        if dest is not None:
            try:
                self.copy_logs(container, dest)
            except Exception as exc:
                log.warning("copying /logs of %s: %s", what, _one_line(exc))
        if thread is not None:
            thread.join(timeout=2)
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except Exception:
            log.exception("removing %s", what)

    def stop(self, role: str) -> None:
        rp = self.roles.pop(role, None)
        if rp is None:
            return
        with _signals_deferred():
            self._retire(rp.container, rp.dir / "logs", rp.log_thread, f"{role} container {rp.container.name}")

    def close(self) -> None:
        """Remove every container (proxy first, then roles in reverse) and the network. Never raises."""
        if self._closed:
            return
        self._closed = True
        with _signals_deferred():
            if self.proxy is not None:
                self.proxy.close()
            # Roles in parallel: each may take stop_timeout_s to honour SIGTERM.
            threads = [threading.Thread(target=self.stop, args=(role,), name=f"stop-{role}")
                       for role in reversed(list(self.roles))]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            if self.network is not None:
                try:
                    self.network.remove()
                except Exception as exc:
                    log.warning("removing network %s: %s", self.prefix, _one_line(exc))
            if self.client is not None:
                try:
                    left = remove_leftovers(self.client, self.run_id)  # e.g. a container whose start failed midway
                    if left:
                        log.warning("removed leftovers of run %s: %s", self.run_id, ", ".join(left))
                except Exception:
                    log.exception("removing the containers and network of run %s", self.run_id)
                self.network = None
                with contextlib.suppress(Exception):
                    self.client.close()
        forget_at_exit(self)

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and (getattr(self, "roles", None) or getattr(self, "network", None)):
            warnings.warn("DockerBackend collected with containers running; removing them", ResourceWarning,
                          stacklevel=1)
            self.close()

    # --- the fault proxy -----------------------------------------------------------------------

    def fault_proxy(self, upstreams: Mapping[str, str], *, workdir: Path, plan: Plan | None = None,
                    save_flows: bool = True) -> ContainerFaultProxy:
        """The fault proxy as a container on this run's network (``Stack.start`` calls this)."""
        self.proxy = ContainerFaultProxy(self, upstreams, workdir=workdir, plan=plan, save_flows=save_flows)
        return self.proxy


@attrs.define(eq=False)
class ContainerFaultProxy(ProxyFiles):
    """:class:`~harness.stack.proxy.FaultProxy`'s interface, with mitmdump in a container."""

    backend: DockerBackend
    upstreams: Mapping[str, str]
    workdir: Path = attrs.field(converter=Path)
    plan: Plan | None = None
    save_flows: bool = True
    startup_timeout_s: float = 30.0
    ports: dict[str, int] = attrs.field(factory=dict, init=False)
    control: ControlClient | None = attrs.field(default=None, init=False)
    container: Any = attrs.field(default=None, init=False)
    control_host_port: int = attrs.field(default=0, init=False)
    _thread: threading.Thread | None = attrs.field(default=None, init=False)

    def url(self, link: str) -> str:
        """Base URL a container uses instead of the real peer on ``link``."""
        return f"http://{PROXY_ALIAS}:{self.ports[link]}"

    def command(self) -> list[str]:
        # listens on every interface of the container: the roles reach it by its alias
        return faultproxy_args(script=PROXY_SCRIPT, ports=self.ports, upstreams=self.upstreams,
                               listen_host="0.0.0.0", files_dir=PROXY_MOUNT, control_port=PROXY_CONTROL_PORT,
                               plan=self.plan is not None, save_flows=self.save_flows,
                               extra_sets=("faultrun_control_host=0.0.0.0", "confdir=/tmp/mitmproxy"))

    def start(self) -> ContainerFaultProxy:
        if self.container is not None:
            raise ProxyStartError("fault proxy already started")
        unknown = set(self.upstreams) - set(PROXY_LINK_PORTS)
        if unknown:
            raise ProxyStartError(f"unknown link {sorted(unknown)[0]!r}")
        self.workdir = self.workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ports = {link: PROXY_LINK_PORTS[link] for link in self.upstreams}
        token = secrets.token_urlsafe(24)
        token_file = self.workdir / "control.token"
        token_file.write_text(token)
        os.chmod(token_file, 0o600)
        if self.plan is not None:
            dump_plan(self.plan, self.workdir / "plan.toml")
        try:
            self.container = self.backend.run_container(
                "proxy", self.backend.proxy_image, alias=PROXY_ALIAS, entrypoint=["mitmdump"], command=self.command(),
                publish=PROXY_CONTROL_PORT, user=f"{os.getuid()}:{os.getgid()}",
                volumes={str(self.workdir): {"bind": PROXY_MOUNT, "mode": "rw"}})
            self._thread = _stream_logs(self.container, self.log_path)
            self.control_host_port = self.backend.published_port(self.container, PROXY_CONTROL_PORT, "proxy",
                                                                  self.log_path)
            self.control = ControlClient(self.control_host_port, token)
            self._wait_ready()
        except BackendError as exc:
            self.close()
            raise ProxyStartError(str(exc), log_tail=_tail(self.log_path)) from exc
        except BaseException:
            self.close()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.control is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            self.container.reload()
            if self.container.status not in ("created", "running"):
                time.sleep(0.1)
                tail = _tail(self.log_path)
                errors = [ln for ln in tail.splitlines() if "Error" in ln]
                reason = re.sub(r"^.*?Error: ", "", errors[0]) if errors else f"exit status "\
                    f"{self.container.attrs.get('State', {}).get('ExitCode')}"
                raise ProxyStartError(f"mitmdump container {self.container.name} exited during startup: {reason}",
                                      log_tail=tail)
            try:
                self.control.status()
                return
            except ControlError:
                pass
            if time.monotonic() > deadline:
                raise ProxyStartError(f"mitmdump container not ready after {self.startup_timeout_s:g} s",
                                      log_tail=_tail(self.log_path))
            time.sleep(0.05)

    def close(self) -> None:
        """Stop and remove the container. Never raises."""
        if self.control is not None:
            with contextlib.suppress(Exception):
                self.control.close()
            self.control = None
        container, self.container = self.container, None
        if container is not None:
            self.backend._retire(container, None, self._thread, f"proxy container {container.name}")

    def __enter__(self) -> ContainerFaultProxy:
        return self.start() if self.container is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()
