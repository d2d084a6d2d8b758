"""The ``faultrun`` entry point: dispatch to a command, turn every error into one line and
its exit status (:class:`harness.check.verdict.ExitCode`)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

from dap.errors import VdafError
from faults.errors import FaultError
from harness.check.verdict import ExitCode
from harness.cli.args import PROG, setup_logging
from harness.errors import HarnessError

__all__ = ["main"]

log = logging.getLogger("faultrun")


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] == "analyze":
        from harness.cli.analyze import analyze_command
        return analyze_command(argv[1:])
    if argv and argv[0] == "campaign":
        from harness.cli.campaign import campaign_command
        return campaign_command(argv[1:])
    if argv and argv[0] == "merge":
        from harness.cli.merge import merge_command
        return merge_command(argv[1:])
    from harness.cli.faultrun import build_parser, run_command
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_command(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (never raises for user mistakes)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = sum(a.count("v") for a in argv if a.startswith("-") and not a.startswith("--") and set(a[1:]) == {"v"})
    verbose += argv.count("--verbose")
    previous = previous_int = previous_hup = None
    try:
        previous = signal.signal(signal.SIGTERM, _sigterm)
        # a closed terminal: stop every process in order, as for SIGTERM (children also get
        # SIGTERM from the kernel if faultrun dies unprepared: harness.stack.lifetime)
        previous_hup = signal.signal(signal.SIGHUP, _sigterm)
        # A shell starts background jobs with SIGINT ignored and Python then installs no
        # KeyboardInterrupt handler: faultrun must still stop its processes on SIGINT.
        previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread
        pass
    try:
        return _dispatch(argv)
    except HarnessError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        tail = getattr(exc, "log_tail", "") or getattr(exc.__cause__, "log_tail", "")
        if tail:
            sys.stderr.write(tail if verbose else f"{PROG}: (-v shows the failing process's log)\n")
        return exc.exit_code
    except (VdafError, FaultError) as exc:  # the user's plan, scenario or workload
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return int(ExitCode.USAGE)
    except BrokenPipeError:  # e.g. `faultrun --list | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(ExitCode.OK)
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted; every process was stopped\n")
        return int(ExitCode.INTERRUPTED)
    except SystemExit as exc:  # argparse --help
        return int(exc.code or 0) if not isinstance(exc.code, str) else int(ExitCode.USAGE)
    except Exception as exc:  # a harness bug: one line, traceback only with -v
        if verbose:
            log.exception("internal error")
        sys.stderr.write(f"{PROG}: internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)\n")
        return int(ExitCode.INFRA)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)
        if previous_hup is not None:
            signal.signal(signal.SIGHUP, previous_hup)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
