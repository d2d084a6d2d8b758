"""Entry point of the reference interop image (``Dockerfile``; docs/docker.md).

::

    docker run --rm -p 8080:8080 dap-faultrun:local leader [--request-timeout 1 ...]

The first argument (or ``$DAP_ROLE``) is the role: ``leader``, ``helper``, ``client`` or
``collector``; the rest go to ``python -m dap.roles``. The role serves the interop test API
(and, for aggregators, DAP) on ``0.0.0.0:$DAP_PORT`` (default 8080, the interop design's
port), keeps its state (SQLite database, ``requests.log``) in ``/logs``, and writes its
output both to stdout (``docker logs``) and to ``/logs/<role>.log``, as the interop test
design asks (logs under ``/logs``). SIGTERM / SIGINT are passed on to the role, whose exit
status becomes the container's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROLES = ("leader", "helper", "client", "collector")
USAGE = ("usage: ROLE [python -m dap.roles options]   (ROLE: leader, helper, client or collector; "
         "or set DAP_ROLE)")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ROLES:
        role = args.pop(0)
    else:
        role = os.environ.get("DAP_ROLE", "")
    if role not in ROLES or (args and args[0] in ("-h", "--help")):
        sys.stderr.write(USAGE + "\n")
        return 0 if args and args[0] in ("-h", "--help") else 2
    logs = Path(os.environ.get("DAP_LOGS", "/logs"))
    logs.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "dap.roles", "--role", role, "--host", os.environ.get("DAP_HOST", "0.0.0.0"),
           "--port", os.environ.get("DAP_PORT", "8080"), "--state-dir", str(logs), *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(logs / f"{role}.log", "ab", buffering=0) as logf:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=env)

        def forward(signum: int, frame: object) -> None:
            if proc.poll() is None:
                proc.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        assert proc.stdout is not None
        out = sys.stdout.buffer
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
            logf.write(chunk)
            out.write(chunk)
            out.flush()
        code = proc.wait()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
