"""Which code produced a run: written as ``code.json`` beside ``record.json``.

An "intermittent" failure that is really a role started while its source was being edited
in place looks exactly like a flaky target. Recording the commit, whether the tree was
dirty, and a digest of the Python sources the roles and the harness import lets a reader
tell those apart: two runs with different ``sources_sha256`` ran different code.

The identity is computed once per process (:func:`code_identity` is cached) and as early as
possible — :meth:`harness.run.Stack.start` calls it before starting roles — so it describes
the code the roles loaded, not whatever the tree holds when the last run is written.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import REPO

__all__ = ["SOURCE_PACKAGES", "code_identity"]

#: the packages whose sources decide what a run does (roles, codec, faults, harness, proxy)
SOURCE_PACKAGES = ("dap", "faults", "harness", "proxy_addons")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10,
                             check=True)
    except (OSError, subprocess.SubprocessError):
        return None  # not a git checkout (an installed wheel, a container image): the digest still tells
    return out.stdout.strip()


def sources_digest(root: Path = REPO, packages: tuple[str, ...] = SOURCE_PACKAGES) -> str:
    """SHA-256 over (relative path, content) of every ``*.py`` file in ``packages``, sorted."""
    h = hashlib.sha256()
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            h.update(rel.encode() + b"\0")
            h.update(path.read_bytes())
            h.update(b"\0")
    return h.hexdigest()


@functools.cache
def code_identity() -> dict[str, Any]:
    """``{"version", "git_commit", "git_dirty", "sources_sha256"}``; git fields None outside a checkout."""
    try:
        version = metadata.version("dap-faultrun")
    except metadata.PackageNotFoundError:
        version = None
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no", "--", *SOURCE_PACKAGES) if commit else None
    return {
        "version": version,
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
        "sources_sha256": sources_digest(),
    }
