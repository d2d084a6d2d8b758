"""Run the fault proxy as a mitmdump child process (the harness's way to use it).

Embedding mitmproxy's master in-process is not a supported API, so the harness owns a
child ``mitmdump -s proxy_addons/faultproxy.py`` with one ``reverse:`` mode per link on
free loopback ports, a control port and a random per-run token (in a 0600 file, never on
the command line)::

    with FaultProxy({"client->leader": "http://127.0.0.1:9001",
                     "leader->helper": "https://127.0.0.1:9002"}, workdir=run_dir) as proxy:
        leader_url = proxy.url("client->leader")        # give this to the client
        proxy.control.load_plan(plan)                   # no restart
        ...
        events = proxy.control.history()

Files in ``workdir``: ``history.jsonl``, ``flows.mitm`` (open with ``mitmweb -r``),
``mitmdump.log``, ``control.token``, ``plan.toml`` (the initial plan), ``flows/`` (flows files
started through the control channel's ``/segment``: one per scenario under a Stack).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import attrs

import proxy_addons
from faults.plan import Plan, dump_plan
from faults.vocabulary import LINKS
from harness.errors import ControlError, ProxyStartError
from harness.stack.control import ControlClient
from harness.stack.lifetime import forget_child, spawn
from harness.stack.ports import free_port

__all__ = ["FaultProxy", "ProxyFiles", "faultproxy_args", "free_port", "mitmdump_command"]

log = logging.getLogger(__name__)
SCRIPT = Path(proxy_addons.__file__).with_name("faultproxy.py")
_BIND_ATTEMPTS = 3


def faultproxy_args(*, script: str, ports: Mapping[str, int], upstreams: Mapping[str, str], listen_host: str,
                    files_dir: str, control_port: int, plan: bool, save_flows: bool,
                    extra_sets: Sequence[str] = ()) -> list[str]:
    """mitmdump's arguments (after the executable) for the fault proxy: one reverse mode
    per link on ``listen_host``, the addon's options, and its files (history, control
    token, plan, flows) under ``files_dir`` -- the host work dir, or where a container
    mounts it (harness.stack.docker). ``extra_sets`` are more ``name=value`` options."""
    args = ["-q", "-s", script]
    for link, port in ports.items():
        args += ["--mode", f"reverse:{upstreams[link]}@{listen_host}:{port}"]
    links = ",".join(f"{port}={link}" for link, port in ports.items())
    sets = [f"faultrun_links={links}", f"faultrun_history={files_dir}/history.jsonl",
            f"faultrun_control={control_port}", f"faultrun_token_file={files_dir}/control.token",
            "client_replay_concurrency=-1", "flow_detail=0", "termlog_verbosity=warn",
            "connection_strategy=lazy", *extra_sets]
    if plan:
        sets.append(f"faultrun_plan={files_dir}/plan.toml")
    for opt in sets:
        args += ["--set", opt]
    if save_flows:
        args += ["-w", f"{files_dir}/flows.mitm"]
    return args


def mitmdump_command() -> list[str]:
    """How to start mitmdump: the venv's script next to this Python, else PATH."""
    exe = Path(sys.executable).with_name("mitmdump")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mitmdump")
    if found:
        return [found]
    return [sys.executable, "-c", "from mitmproxy.tools.main import mitmdump; mitmdump()"]


class ProxyFiles:
    """Where a fault proxy (a local mitmdump or its container) keeps its files: one place for
    both kinds."""

    workdir: Path

    @property
    def history_path(self) -> Path:
        return self.workdir / "history.jsonl"

    @property
    def flows_path(self) -> Path:
        return self.workdir / "flows.mitm"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mitmdump.log"


@attrs.define
class FaultProxy(ProxyFiles):
    """Owner of one mitmdump child serving every link. Context manager; ``close()`` kills it.

    ``upstreams`` maps link -> upstream base URL (http:// or https://). With an https
    upstream, pass ``upstream_ca`` (CA file to verify it) or ``ssl_insecure=True``.
    ``plan`` is installed at start (later plans go through :attr:`control`).
    """

    upstreams: Mapping[str, str]
    workdir: Path = attrs.field(converter=Path)
    plan: Plan | None = None
    ssl_insecure: bool = False
    upstream_ca: Path | None = None
    save_flows: bool = True
    extra_args: Sequence[str] = ()
    startup_timeout_s: float = 30.0
    #: where the link listeners and the control channel listen (and the harness reaches them)
    listen_host: str = "127.0.0.1"
    #: run mitmdump through this (``ip netns exec NS``: the netns network, harness.stack.netns)
    command_prefix: Sequence[str] = ()
    #: the listen port of a link, or of ``"control"`` (default: free loopback ports)
    port_picker: Callable[[str], int] = lambda what: free_port()
    ports: dict[str, int] = attrs.field(factory=dict, init=False)
    control_port: int = attrs.field(default=0, init=False)
    control: ControlClient | None = attrs.field(default=None, init=False)
    process: subprocess.Popen | None = attrs.field(default=None, init=False)
    _token: str = attrs.field(default="", init=False, repr=False)
    _log: object = attrs.field(default=None, init=False, repr=False)
    _log_start: int = attrs.field(default=0, init=False, repr=False)

    def url(self, link: str) -> str:
        """Base URL a party should use instead of the real peer on ``link``."""
        return f"http://{self.listen_host}:{self.ports[link]}"

    def command(self) -> list[str]:
        """The full mitmdump command line (ports must be assigned)."""
        extra = [] if self.listen_host == "127.0.0.1" else [f"faultrun_control_host={self.listen_host}"]
        cmd = [*self.command_prefix, *mitmdump_command(), *faultproxy_args(
            script=str(SCRIPT), ports=self.ports, upstreams=self.upstreams, listen_host=self.listen_host,
            files_dir=str(self.workdir), control_port=self.control_port, plan=self.plan is not None,
            save_flows=self.save_flows, extra_sets=extra)]
        if self.ssl_insecure:
            cmd += ["--set", "ssl_insecure=true"]
        if self.upstream_ca is not None:
            cmd += ["--set", f"ssl_verify_upstream_trusted_ca={self.upstream_ca}"]
        cmd += list(self.extra_args)
        return cmd

    def start(self) -> FaultProxy:
        """Start mitmdump and wait until every link port and the control channel answer."""
        if self.process is not None:
            raise ProxyStartError("FaultProxy already started")
        unknown = set(self.upstreams) - set(LINKS)
        if unknown:
            raise ProxyStartError(f"unknown link {sorted(unknown)[0]!r} (known: {', '.join(LINKS)})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, _BIND_ATTEMPTS):
            try:
                return self._start_once()
            except ProxyStartError as exc:
                # A port free when picked was taken before mitmdump bound it (by a program that
                # does not use free_port): pick new ones.
                if "address already in use" not in exc.log_tail.lower():
                    raise
                log.warning("mitmdump could not bind a port (attempt %d); retrying with new ports", attempt)
        return self._start_once()

    def _start_once(self) -> FaultProxy:
        self.ports = {link: self.port_picker(link) for link in self.upstreams}
        self.control_port = self.port_picker("control")
        self._token = secrets.token_urlsafe(24)
        token_file = self.workdir / "control.token"
        token_file.write_text(self._token)
        os.chmod(token_file, 0o600)
        if self.plan is not None:
            dump_plan(self.plan, self.workdir / "plan.toml")
        try:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - owned, closed in close()
            self._log_start = self._log.tell()
            self.process = spawn(self.command(), what="fault proxy (mitmdump)", stdin=subprocess.DEVNULL,
                                 stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir)
            self.control = ControlClient(self.control_port, self._token, host=self.listen_host)
            self._wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def new_control_client(self) -> ControlClient:
        """Another client of the control channel (one per thread: a client is not shared)."""
        return ControlClient(self.control_port, self._token, host=self.listen_host)

    def _this_start_log(self) -> list[str]:
        """The log lines of the current start attempt (the file is appended to across attempts)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_start)
                return f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []

    def _log_tail(self, n: int = 40) -> str:
        return "\n".join(self._this_start_log()[-n:])

    def _startup_error(self) -> str:
        """The first option/plan error line mitmdump logged, without the exception class."""
        lines = self._this_start_log()
        for line in lines:
            if "failed to listen" in line:  # "[hh:mm:ss] ... failed to listen on 127.0.0.1:N with ..."
                return line.split("] ", 1)[-1].strip()
        for marker in ("OptionsError: ", "Error: "):
            for line in lines:
                if marker in line and not line.startswith(" "):
                    return line.split(marker, 1)[1].strip()
        return ""

    def _wait_ready(self) -> None:
        assert self.process is not None and self.control is not None
        deadline = time.monotonic() + self.startup_timeout_s
        waiting = [*self.ports.values()]
        while True:
            if self.process.poll() is not None:
                reason = self._startup_error()
                raise ProxyStartError(
                    f"mitmdump exited with {self.process.returncode} during startup" + (f": {reason}" if reason else ""),
                    log_tail=self._log_tail(),
                )
            waiting = [p for p in waiting if not _listening(p, self.listen_host)]
            if not waiting:
                try:
                    self.control.status()
                    return
                except ControlError:
                    pass
            if time.monotonic() > deadline:
                raise ProxyStartError(
                    f"mitmdump not ready after {self.startup_timeout_s}s (ports not listening: {waiting})",
                    log_tail=self._log_tail(),
                )
            time.sleep(0.05)

    def close(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL) and release files. Never raises."""
        if self.control is not None:
            try:
                self.control.close()
            except Exception:
                log.exception("closing control client")
            self.control = None
        proc, self.process = self.process, None
        if proc is not None:
            forget_child(proc.pid)
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    log.error("mitmdump pid %s did not exit after SIGKILL", proc.pid)
            except Exception:
                log.exception("stopping mitmdump pid %s", proc.pid)
        if self._log is not None:
            try:
                self._log.close()  # type: ignore[attr-defined]
            except OSError:
                log.exception("closing mitmdump log")
            self._log = None

    def __enter__(self) -> FaultProxy:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "process", None) is not None:
            warnings.warn("FaultProxy collected while its mitmdump child runs; closing it", ResourceWarning,
                          stacklevel=1)
            self.close()


def _listening(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
