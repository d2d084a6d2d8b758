"""``python -m dap.roles``: run one reference DAP-09 role behind the interop test API.

THE /internal/test/* API IS FOR TESTING ONLY: it registers tasks with their secrets
without authentication. Never expose a role started here to an untrusted network.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dap.argtypes import nonneg_int, port, positive_float, positive_int
from dap.roles import bugs  # test-only bug switches (docs/self-validation.md)
from dap.roles.limits import Limits, guarded_protocol

__all__ = ["main", "build_parser"]

_DESCRIPTION = """\
Reference DAP-09 (draft-ietf-ppm-dap-09) role for dap-faultrun: Leader, Helper,
Client or Collector, serving the DAP interop test API (draft-dcook-ppm-dap-interop-
test-design-07) under /internal/test/ and, for the Aggregators, DAP under /.

WARNING: the /internal/test/ API is for testing only. It accepts task secrets
without any authentication; bind it to loopback (the default) or an isolated
test network, never to a production or public interface."""


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m dap.roles",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--role", required=True, choices=["leader", "helper", "client", "collector"])
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=port, default=8080, help="TCP port (default 8080)")
    p.add_argument(
        "--state-dir", required=True, type=Path,
        help="directory for the SQLite database and requests.log (created if missing)",
    )
    p.add_argument(
        "--sync", choices=["normal", "full"], default="normal",
        help="SQLite synchronous mode (WAL): normal survives process kills, full also power loss",
    )
    g = p.add_argument_group("aggregator")
    g.add_argument("--clock-skew", type=nonneg_int, default=60, metavar="S",
                   help="accepted future skew of report timestamps in seconds (default 60)")
    g.add_argument("--job-size", type=positive_int, default=100, metavar="N",
                   help="Leader: max reports per aggregation job (default 100)")
    g.add_argument("--min-job-size", type=positive_int, default=1, metavar="N",
                   help="Leader: min reports before a job is created (default 1)")
    g.add_argument("--job-interval", type=positive_float, default=0.2, metavar="S",
                   help="Leader: seconds between aggregation-job creation passes (default 0.2)")
    g.add_argument("--collect-interval", type=positive_float, default=0.2, metavar="S",
                   help="Leader: seconds between collection-job driver passes (default 0.2)")
    g.add_argument("--retry-budget", type=positive_float, default=30.0, metavar="S",
                   help="Leader: seconds of retries against the Helper before a job is "
                        "abandoned (default 30)")
    g.add_argument("--request-timeout", type=positive_float, default=10.0, metavar="S",
                   help="Leader: timeout of one request to the Helper (default 10)")
    d = Limits()
    lim = p.add_argument_group(
        "limits and timeouts",
        "A body over its limit is answered 413 before it is read (by Content-Length) or\n"
        "as soon as the count passes the limit; task, authentication and Content-Type\n"
        "are checked before any body byte is read (docs/reference-impl.md).")
    lim.add_argument("--max-upload-bytes", type=positive_int, default=d.max_upload_bytes,
                     metavar="N", help=f"Leader: largest report upload (default {d.max_upload_bytes})")
    lim.add_argument("--max-agg-job-bytes", type=positive_int, default=d.max_agg_job_bytes,
                     metavar="N", help="Helper: largest aggregation-job init or continue request"
                     f" (default {d.max_agg_job_bytes})")
    lim.add_argument("--max-agg-share-req-bytes", type=positive_int,
                     default=d.max_agg_share_req_bytes, metavar="N",
                     help=f"Helper: largest aggregate-share request (default {d.max_agg_share_req_bytes})")
    lim.add_argument("--max-collect-req-bytes", type=positive_int,
                     default=d.max_collect_req_bytes, metavar="N",
                     help=f"Leader: largest collection-job request (default {d.max_collect_req_bytes})")
    lim.add_argument("--max-test-api-bytes", type=positive_int, default=d.max_test_api_bytes,
                     metavar="N", help=f"largest /internal/test request (default {d.max_test_api_bytes})")
    lim.add_argument("--max-header-bytes", type=positive_int, default=d.max_header_bytes,
                     metavar="N", help="largest request line + headers; more is answered 431 and"
                     f" the connection closed (default {d.max_header_bytes})")
    lim.add_argument("--header-timeout", type=positive_float, default=d.header_timeout,
                     metavar="S", help="seconds for a request line + headers to arrive, from the"
                     " connection's opening or the request's first byte; then the connection is"
                     f" closed (default {d.header_timeout:g})")
    lim.add_argument("--body-timeout", type=positive_float, default=d.body_timeout, metavar="S",
                     help="seconds for a whole request body to arrive (else 408 and the"
                     " connection closed); also how long the rest of a body is discarded after"
                     f" an early answer (default {d.body_timeout:g})")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        on = bugs.configure()
    except bugs.BugConfigError as exc:
        sys.stderr.write(f"python -m dap.roles: error: {exc}\n")
        return 2
    if on:
        sys.stderr.write(f"python -m dap.roles: TEST MODE: bug switches on: {', '.join(sorted(on))}\n")
    try:
        args.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        sys.stderr.write(f"python -m dap.roles: error: --state-dir {args.state_dir}: {exc.strerror}\n")
        return 2
    if not args.state_dir.is_dir():
        sys.stderr.write(f"python -m dap.roles: error: --state-dir {args.state_dir}: not a directory\n")
        return 2

    import uvicorn

    from dap.roles.server import build_app

    app = build_app(args)
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level="warning", access_log=False,
        lifespan="on", timeout_graceful_shutdown=2,
        # uvicorn's httptools protocol plus header timeout / size cap and a bounded discard
        # of unread bodies (dap/roles/limits.py)
        http=guarded_protocol(Limits.from_args(args), log=app.write),
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1
