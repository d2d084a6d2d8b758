"""A private Docker engine, a registry-free base image and the reference image (docs/docker.md).

For machines with Debian's ``docker.io`` but no running engine and no registry (CI here)::

    python -m harness.stack.dockerd start --root /tmp/fr-engine   # prints: export DOCKER_HOST=unix://...
    export DOCKER_HOST=unix:///tmp/fr-engine/docker.sock
    python -m harness.stack.dockerd base-image                    # debootstrap trixie -> faultrun-base:trixie
    python -m harness.stack.dockerd build-image                   # Dockerfile -> dap-faultrun:local
    faultrun --backend docker --impl all=reference --fault duplicate-report
    python -m harness.stack.dockerd cleanup                       # containers/networks a killed faultrun left
    python -m harness.stack.dockerd stop --root /tmp/fr-engine    # dockerd, containerd, mounts, the directory

:class:`PrivateDockerd` runs ``dockerd`` with everything under one directory (data root,
exec root, pidfile, socket, ``dockerd.log``) and touches nothing shared on the host:
``--iptables=false`` (no host firewall rules), ``--bridge=none`` (no ``docker0``; the harness
creates its own bridge network per run, on which containers reach each other at layer 2),
``--ip-masq=false`` (containers reach nothing outside). Published ports work through
``docker-proxy`` on 127.0.0.1. It needs root. :meth:`PrivateDockerd.stop` ends dockerd (which
stops its containerd), kills any process still running from the directory, unmounts what is
mounted under it and removes it; :meth:`PrivateDockerd.leftovers` says what remains (nothing).

:func:`base_tarball` builds a minimal Debian root filesystem with ``debootstrap --variant=minbase``
(trixie: the project needs Python >= 3.12, bookworm has 3.11) with ``python3`` and
``python3-venv``, the host's CA bundle as ``/etc/ssl/certs/faultrun-host-ca.crt`` (pip in a
build verifies PyPI with it: ``PIP_CERT``), and caches the tar under :func:`cache_dir`
(``~/.cache/dap-faultrun``), keyed by suite, packages, mirror and CA bundle.
:func:`import_base` makes it the image ``faultrun-base:trixie`` (a plain local tag: dockerd never
asks a registry for it). :func:`build_reference_image` builds the Dockerfile with
``BASE=faultrun-base:trixie`` and host networking (pip reaches PyPI while the run networks
stay isolated).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from harness.errors import BackendError, HarnessError
from harness.stack.images import REPO

__all__ = ["BASE_TAG", "REFERENCE_TAG", "EngineError", "PrivateDockerd", "base_tarball", "build_reference_image",
           "cache_dir", "ensure_packages", "import_base", "main"]

BASE_SUITE = "trixie"
BASE_TAG = f"faultrun-base:{BASE_SUITE}"
REFERENCE_TAG = "dap-faultrun:local"
MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE_CA = "/etc/ssl/certs/faultrun-host-ca.crt"
APT_PACKAGES = {"dockerd": "docker.io", "containerd": "containerd", "runc": "runc", "docker-proxy": "docker.io",
                "debootstrap": "debootstrap"}


class EngineError(BackendError):
    """The private engine or an image could not be set up (one line; ``log_tail`` has details)."""


def cache_dir() -> Path:
    """``$FAULTRUN_CACHE``, else ``$XDG_CACHE_HOME/dap-faultrun``, else ``~/.cache/dap-faultrun``."""
    if os.environ.get("FAULTRUN_CACHE"):
        return Path(os.environ["FAULTRUN_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dap-faultrun"


def _which(name: str) -> str | None:
    return shutil.which(name) or next((str(p) for d in ("/usr/sbin", "/sbin", "/usr/bin")
                                       if (p := Path(d) / name).is_file()), None)


def ensure_packages(tools: tuple[str, ...] = ("dockerd", "containerd", "runc", "docker-proxy", "debootstrap"),
                    *, install: bool = True) -> None:
    """Make sure the tools are there; install Debian's packages with apt-get when root, else one line."""
    missing = [t for t in tools if _which(t) is None]
    if not missing:
        return
    pkgs = sorted({APT_PACKAGES.get(t, t) for t in missing})
    can = install and os.geteuid() == 0 and shutil.which("apt-get") is not None
    if not can:
        raise EngineError(f"missing {', '.join(missing)}: install Debian's {' '.join(pkgs)} "
                          f"(apt-get install -y {' '.join(pkgs)}, as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *pkgs]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise EngineError(f"{' '.join(cmd)} failed with status {r.returncode}", log_tail=(r.stdout + r.stderr)[-4000:])
    still = [t for t in tools if _which(t) is None]
    if still:
        raise EngineError(f"apt-get installed {' '.join(pkgs)} but {', '.join(still)} is still missing")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    out = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        parts = line.split()
        if len(parts) > 4:
            mp = parts[4].replace("\\040", " ")
            if mp.startswith(prefix) or mp == prefix[:-1]:
                out.append(mp)
    return out


def _procs_under(root: Path) -> dict[int, str]:
    """Processes whose command line mentions ``root`` (dockerd, containerd, shims, docker-proxy)."""
    needle = str(root.resolve()).encode()
    out: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmd:
            out[int(d.name)] = cmd.replace(b"\0", b" ").decode(errors="replace").strip()
    return out


@attrs.define(eq=False)
class PrivateDockerd:
    """``dockerd`` with all its state under ``root``. Context manager; ``stop()`` leaves nothing."""

    root: Path = attrs.field(converter=lambda p: Path(p).resolve())
    extra_args: tuple[str, ...] = ()
    remove_root: bool = True
    process: subprocess.Popen | None = attrs.field(default=None, init=False)

    @classmethod
    def temporary(cls, **kw: Any) -> PrivateDockerd:
        # /tmp keeps the socket path short (a unix socket path has at most 107 bytes)
        return cls(Path(tempfile.mkdtemp(prefix="faultrun-dockerd-", dir="/tmp")), **kw)

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.root / "dockerd.pid"

    @property
    def log_path(self) -> Path:
        return self.root / "dockerd.log"

    def command(self) -> list[str]:
        return [_which("dockerd") or "dockerd", "--data-root", str(self.root / "data"),
                "--exec-root", str(self.root / "exec"), "--pidfile", str(self.pidfile),
                "--host", self.docker_host, "--iptables=false", "--ip-masq=false", "--bridge=none",
                "--userland-proxy=true", *self.extra_args]

    def client(self, timeout_s: int = 120) -> Any:
        import docker
        return docker.DockerClient(base_url=self.docker_host, timeout=timeout_s)

    def start(self, timeout_s: float = 60.0, *, install: bool = True) -> PrivateDockerd:
        if os.geteuid() != 0:
            raise EngineError("a private dockerd needs root (or use an engine you have: set DOCKER_HOST)")
        ensure_packages(("dockerd", "containerd", "runc", "docker-proxy"), install=install)
        self.root.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=logf,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            logf.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                tail = self._tail()
                self.stop()
                raise EngineError(f"dockerd exited with status {self.process.returncode} during startup: "
                                  f"{_last_error(tail)}", log_tail=tail)
            if self.socket.exists():
                try:
                    c = self.client(timeout_s=5)
                    try:
                        c.ping()
                        return self
                    finally:
                        c.close()
                except Exception:
                    pass
            if time.monotonic() > deadline:
                tail = self._tail()
                self.stop()
                raise EngineError(f"dockerd not answering after {timeout_s:g} s", log_tail=tail)
            time.sleep(0.1)

    def _tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def _pid(self) -> int | None:
        if self.process is not None:
            return self.process.pid if self.process.poll() is None else None
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout_s: float = 30.0) -> None:
        """End dockerd (its containers and containerd with it), then anything left; remove ``root``."""
        pid = self._pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while _alive(pid, self.process) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid, self.process):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                time.sleep(0.2)
        if self.process is not None:
            with contextlib.suppress(Exception):
                self.process.wait(timeout=5)
        deadline = time.monotonic() + 10
        while (procs := _procs_under(self.root)) and time.monotonic() < deadline:  # shims, docker-proxy
            for p in procs:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(p, signal.SIGKILL)
            time.sleep(0.1)
        for mp in sorted(_mounts_under(self.root), key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True, check=False)
        if self.remove_root and self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)
            if self.root.exists():  # e.g. read-only layers: try once more after the unmounts settle
                time.sleep(0.5)
                shutil.rmtree(self.root, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """What is left of this engine on the host: processes, mounts, the directory."""
        out = [f"process {pid}: {cmd}" for pid, cmd in _procs_under(self.root).items()]
        out += [f"mount {mp}" for mp in _mounts_under(self.root)]
        if self.remove_root and self.root.exists():
            out.append(f"directory {self.root}")
        return out

    def __enter__(self) -> PrivateDockerd:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int, proc: subprocess.Popen | None) -> bool:
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _last_error(tail: str) -> str:
    lines = [ln for ln in tail.splitlines() if "level=fatal" in ln or "level=error" in ln or "failed" in ln]
    line = (lines or tail.strip().splitlines() or ["no output"])[-1]
    return line[:300]


# --- images --------------------------------------------------------------------------------------


def _base_key(suite: str, mirror: str) -> str:
    h = hashlib.sha256(f"{suite}\n{mirror}\n{','.join(BASE_PACKAGES)}\nv1\n".encode())
    if HOST_CA.is_file():
        h.update(HOST_CA.read_bytes())
    return h.hexdigest()[:12]


def base_tarball(cache: Path | None = None, *, suite: str = BASE_SUITE, mirror: str = MIRROR,
                 install: bool = True) -> Path:
    """The cached root filesystem tar of the base image; built with debootstrap when missing."""
    cache = cache or cache_dir()
    tar = cache / f"base-{suite}-{_base_key(suite, mirror)}.tar"
    if tar.is_file():
        return tar
    with _locked(cache / "base.lock"):
        if tar.is_file():  # another process built it while we waited
            return tar
        if os.geteuid() != 0:
            raise EngineError("building the base image needs root (debootstrap); or build the Dockerfile with a "
                              "registry's python:3.12-slim-bookworm")
        ensure_packages(("debootstrap",), install=install)
        work = Path(tempfile.mkdtemp(prefix="base-", dir=cache))
        try:
            rootfs = work / "rootfs"
            cmd = [_which("debootstrap") or "debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                   suite, str(rootfs), mirror]
            with open(work / "debootstrap.log", "wb") as logf:
                r = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, check=False)
            if r.returncode != 0:
                tail = (work / "debootstrap.log").read_bytes()[-4000:].decode(errors="replace")
                raise EngineError(f"debootstrap {suite} failed with status {r.returncode}: "
                                  f"{(tail.strip().splitlines() or ['no output'])[-1]}", log_tail=tail)
            for sub in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                        "usr/share/locale", "usr/share/info", "var/log"):
                d = rootfs / sub
                if d.is_dir():
                    for child in d.iterdir():
                        if child.is_dir() and not child.is_symlink():
                            shutil.rmtree(child, ignore_errors=True)
                        else:
                            child.unlink(missing_ok=True)
            ca = rootfs / IMAGE_CA.lstrip("/")
            if HOST_CA.is_file():
                shutil.copyfile(HOST_CA, ca)
            else:
                ca.symlink_to("ca-certificates.crt")
            part = work / "rootfs.tar"
            r = subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(part), "."],
                               capture_output=True, text=True, check=False)
            if r.returncode != 0:
                raise EngineError(f"tar of the base root filesystem failed: {r.stderr.strip()[-300:]}")
            for old in cache.glob(f"base-{suite}-*.tar"):  # one base per suite is enough
                old.unlink(missing_ok=True)
            os.replace(part, tar)
        finally:
            subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False)
    return tar


def import_base(client: Any, tarball: Path, tag: str = BASE_TAG) -> str:
    """``docker import`` the tarball as ``tag`` (Python, PIP_CERT for the host's CA bundle)."""
    repo, _, version = tag.partition(":")
    changes = [f"ENV PIP_CERT={IMAGE_CA}", "ENV LANG=C.UTF-8", 'CMD ["/bin/bash"]']
    try:
        out = client.api.import_image_from_file(str(tarball), repository=repo, tag=version or "latest",
                                                changes=changes)
    except Exception as exc:
        raise EngineError(f"docker import {tarball} failed: {' '.join(str(exc).split())[:300]}") from exc
    if "error" in str(out).lower() and "status" not in str(out):
        raise EngineError(f"docker import {tarball}: {str(out)[:300]}")
    return tag


def build_reference_image(client: Any, *, tag: str = REFERENCE_TAG, base: str | None = BASE_TAG,
                          network_mode: str = "host", context: Path = REPO) -> str:
    """Build the Dockerfile (classic builder) as ``tag``; return the image ID. Never pulls."""
    import docker

    from harness.stack.docker import ensure_image
    # The classic builder pulls a missing FROM image on its own; never let it (no registry here).
    ensure_image(client, base or "python:3.12-slim-bookworm", pull=False, what="the Dockerfile's BASE")
    buildargs = {"BASE": base} if base else {}
    try:
        image, logs = client.images.build(path=str(context), tag=tag, buildargs=buildargs, network_mode=network_mode,
                                          rm=True, forcerm=True, pull=False)
    except docker.errors.BuildError as exc:
        tail = "".join(str(c.get("stream", c.get("error", ""))) for c in exc.build_log)[-4000:]
        raise EngineError(f"docker build -t {tag} failed: {' '.join(str(exc).split())[:300]}", log_tail=tail) from exc
    except docker.errors.APIError as exc:
        raise EngineError(f"docker build -t {tag} failed: {' '.join(str(exc).split())[:300]}") from exc
    return image.id


# --- command line --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.stack.dockerd",
                                description="A private dockerd, the base image and the reference image (docs/docker.md).")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="start dockerd with all state under --root; print the DOCKER_HOST to use")
    s.add_argument("--root", type=Path, required=True)
    s = sub.add_parser("stop", help="stop the dockerd under --root and remove everything it left")
    s.add_argument("--root", type=Path, required=True)
    s = sub.add_parser("base-image", help=f"debootstrap {BASE_SUITE} (cached) and import it as {BASE_TAG}")
    s.add_argument("--cache", type=Path, help=f"cache directory (default {cache_dir()})")
    s = sub.add_parser("build-image", help=f"build the Dockerfile as {REFERENCE_TAG}")
    s.add_argument("--tag", default=REFERENCE_TAG)
    s.add_argument("--base", default=BASE_TAG, help=f"BASE build argument (default {BASE_TAG}; '' = the "
                                                     "Dockerfile's registry default)")
    sub.add_parser("cleanup", help="remove containers and networks left by a killed faultrun")
    args = p.parse_args(argv)
    try:
        if args.cmd == "start":
            engine = PrivateDockerd(args.root, remove_root=True)
            engine.start()
            engine.process = None  # keep it running after we exit
            print(f"export DOCKER_HOST={engine.docker_host}")
            return 0
        if args.cmd == "stop":
            engine = PrivateDockerd(args.root)
            engine.stop()
            left = engine.leftovers()
            for item in left:
                print(f"left: {item}", file=sys.stderr)
            return 1 if left else 0
        from harness.stack.docker import connect, remove_leftovers
        client = connect()
        if args.cmd == "base-image":
            t0 = time.monotonic()
            tar = base_tarball(args.cache)
            print(f"{import_base(client, tar)} from {tar} ({time.monotonic() - t0:.1f} s)")
        elif args.cmd == "build-image":
            t0 = time.monotonic()
            image_id = build_reference_image(client, tag=args.tag, base=args.base or None)
            print(f"{args.tag} {image_id} ({time.monotonic() - t0:.1f} s)")
        elif args.cmd == "cleanup":
            for name in remove_leftovers(client):
                print(f"removed {name}")
        return 0
    except HarnessError as exc:
        sys.stderr.write(f"harness.stack.dockerd: error: {exc}\n")
        tail = getattr(exc, "log_tail", "")
        if tail:
            sys.stderr.write(tail.rstrip() + "\n")
        return exc.exit_code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
