"""What the ``faultrun`` commands share: the program name, usage errors as one line, logging,
the terminal, and the ``--impl`` option."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

from harness.errors import UsageError
from harness.stack.images import parse_impl

__all__ = ["PROG", "Parser", "add_impl_option", "console", "default_artifacts", "make_root", "one_impl_each",
           "setup_logging"]

PROG = "faultrun"


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are :class:`~harness.errors.UsageError` (one line, exit 2)."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        raise UsageError(message)


def add_impl_option(group: Any, *, matrix: bool = False) -> None:
    """``--impl ROLE=NAME[,NAME...]`` (repeatable), parsed by :func:`harness.stack.images.parse_impl`."""
    extra = "; with --matrix several names per role" if matrix else ""
    group.add_argument("--impl", action="append", default=[], metavar="ROLE=NAME",
                       help=f"implementation per role from images.toml (ROLE: leader, helper, client, collector, "
                            f"all){extra}")


def one_impl_each(texts: Iterable[str]) -> dict[str, str]:
    """``--impl`` values -> role -> one name (several names per role need ``--matrix``)."""
    out: dict[str, str] = {}
    for role, names in parse_impl(texts).items():
        if len(names) != 1:
            raise UsageError(f"--impl {role}={','.join(names)}: one implementation per role (several need --matrix)")
        out[role] = names[0]
    return out


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if not verbose else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)


def console(*, stderr: bool = False) -> Any:
    """A rich console that survives a reader that stops early (``| head``)."""
    from rich.console import Console  # rich's import costs ~50 ms: only when printing

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich exits with status 1 here; a reader that stopped early (`| head`) must
            # neither abort the run nor change its exit status: go quiet and carry on.
            self.quiet = True
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    return _Console(stderr=stderr, highlight=False)


def default_artifacts(prefix: str = "") -> Path:
    """``./artifacts/<prefix><UTC timestamp>``."""
    return Path("artifacts") / (prefix + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))


def make_root(path: Path | None, *, prefix: str = "") -> Path:
    """The output root (``--artifacts`` or the default), created; a one-line error if it cannot be."""
    root = path or default_artifacts(prefix)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--artifacts {root}: {exc.strerror or exc}") from exc
    return root

