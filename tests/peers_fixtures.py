"""The independent peers (peers/, docs/images.md) as test processes.

:func:`janus_binary` is the Janus peer that ``bash scripts/bootstrap --test`` builds with cargo
(``peers/janus``); :func:`require_janus` FAILS the test (never skips) when it is missing and
says how to build it. :class:`PeerProcess` runs one interop-API peer on a free 127.0.0.1 port,
waits for ``/internal/test/ready`` and is always stopped by ``close()``; it has the
``url`` / ``api`` / ``call`` / ``close`` surface of :class:`roles_fixtures.RoleProcess`, so it can
stand in for a reference role in a :class:`roles_fixtures.Deployment`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.stack.interop import InteropClient
from harness.stack.ports import free_port

REPO = Path(__file__).resolve().parent.parent
DIVVIUP_CLIENT = REPO / "peers" / "divviup-ts" / "client.mjs"
JANUS_WRAPPER = REPO / "peers" / "janus" / "peer"
BUILD_HINT = "run `bash scripts/bootstrap --test` (builds peers/janus with cargo, Rust >= 1.95)"


def cargo_target() -> Path:
    """Where bootstrap builds the Janus peer (outside the clone, survives re-runs)."""
    override = os.environ.get("DAP_FAULTRUN_CARGO_TARGET")
    return Path(override) if override else Path.home() / ".cache" / "dap-faultrun" / "cargo-target"


def janus_binary() -> Path:
    return cargo_target() / "release" / "dap-faultrun-janus-peer"


def require_janus() -> Path:
    path = janus_binary()
    if not os.access(path, os.X_OK):
        pytest.fail(f"Janus peer binary missing at {path}: {BUILD_HINT}", pytrace=False)
    return path


def require_node() -> str:
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("`node` (Node.js 20) is not on PATH; the divviup-ts peer needs it", pytrace=False)
    if not (REPO / "node_modules" / "@divviup" / "dap" / "package.json").is_file():
        pytest.fail(f"node_modules/@divviup/dap missing: run `npm ci` in {REPO} (bootstrap does)", pytrace=False)
    return exe


def peer_command(name: str) -> list[str]:
    """The command line (without --host/--port) of peer ``name``; FAILS if it is not built."""
    if name == "divviup-ts-client":
        return [require_node(), str(DIVVIUP_CLIENT)]
    if name in ("janus-client", "janus-collector"):
        return [str(require_janus()), name.split("-", 1)[1]]
    raise ValueError(name)


class PeerProcess:
    """One peer process on 127.0.0.1; ``close()`` always stops it (its whole process group)."""

    def __init__(self, name: str, log_dir: Path, role: str | None = None) -> None:
        self.name = name
        self.role = role or name.rsplit("-", 1)[1]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in close()
        self._api: InteropClient | None = None
        cmd = [*peer_command(name), "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.wait_ready()
        except BaseException:
            self.close()
            raise

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.post(self.url + "internal/test/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become ready: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def post(self, path: str, body: Any = None, *, content: bytes | None = None, timeout: float = 60) -> httpx.Response:
        url = self.url + path.lstrip("/")
        if content is not None:
            return httpx.post(url, content=content, timeout=timeout)
        return httpx.post(url, json=body if body is not None else {}, timeout=timeout)

    def call(self, path: str, body: dict) -> dict:
        r = self.post("internal/test/" + path, body)
        assert r.status_code == 200, (self.name, path, r.status_code, r.text)
        return r.json()

    @property
    def api(self) -> InteropClient:
        if self._api is None:
            self._api = InteropClient(self.role, self.url, timeout_s=60)
        return self._api

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        if not self._log.closed:
            self._log.close()

    def __enter__(self) -> PeerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
