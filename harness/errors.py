"""Errors of the harness, split by who is at fault (the CLI's exit code follows the branch)::

    HarnessError
    ├── ConfigError          the user's input is wrong: exit 2
    │   ├── ImagesError      images.toml: file, line (when known), key
    │   ├── WorkloadError    --vdaf / --reports / --query-type / a workload the VDAF cannot hold
    │   └── UsageError       conflicting or unknown flags, unknown fault, unknown implementation
    └── InfraError           the harness or its processes failed: exit 3
        ├── BackendError     a role could not be started / stopped (or a backend is unavailable)
        └── InteropError     an interop test API call failed at the HTTP level (not a DAP error)

Each message is one line. Context goes in keyword-only arguments (``role``, ``path``...).
"""

from __future__ import annotations

__all__ = ["BackendError", "ConfigError", "HarnessError", "ImagesError", "InfraError", "InteropError",
           "UsageError", "WorkloadError"]


class HarnessError(Exception):
    """Base of every harness error; ``str(exc)`` is one line."""

    exit_code = 3


class ConfigError(HarnessError):
    exit_code = 2


class ImagesError(ConfigError):
    def __init__(self, message: str, *, path: object = None, line: int | None = None, key: str | None = None) -> None:
        where = str(path) if path is not None else "images.toml"
        if line is not None:
            where += f":{line}"
        super().__init__(f"{where}: {key + ': ' if key else ''}{message}")
        self.path, self.line, self.key = path, line, key


class WorkloadError(ConfigError):
    pass


class UsageError(ConfigError):
    pass


class InfraError(HarnessError):
    exit_code = 3


class BackendError(InfraError):
    def __init__(self, message: str, *, role: str | None = None, log_tail: str = "") -> None:
        super().__init__(f"{role}: {message}" if role else message)
        self.role, self.log_tail = role, log_tail


class InteropError(InfraError):
    def __init__(self, message: str, *, role: str | None = None, path: str | None = None) -> None:
        super().__init__(f"{role} {path}: {message}" if role else message)
        self.role, self.path = role, path
