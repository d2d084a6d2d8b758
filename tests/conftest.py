"""Shared pytest fixtures. Keep this small and general; topic fixtures live with their tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# Packages package-lock.json pins for the `node` tests (the independent divviup-ts peers).
NODE_PACKAGES = ("@divviup/dap", "@divviup/prio3")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository checkout (holds package.json, node_modules, tests/node)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def node_modules(repo_root: Path) -> Path:
    """``node_modules`` with the divviup-ts peers installed; FAILS (never skips) without them."""
    path = repo_root / "node_modules"
    missing = [name for name in NODE_PACKAGES if not (path / name / "package.json").is_file()]
    if missing:
        pytest.fail(
            f"npm test peers missing from {path}: {', '.join(missing)}; "
            f"run `npm ci` in {repo_root}",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def node(node_modules: Path) -> str:
    """Path of the ``node`` executable (needs ``node_modules``); FAILS if node is not installed."""
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("`node` (Node.js 20) is not on PATH; the `node` tests need it", pytrace=False)
    return exe
