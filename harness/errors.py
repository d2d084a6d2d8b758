"""Errors of the harness, split by who is at fault (the CLI's exit code follows the branch)::

    HarnessError
    ├── ConfigError          the user's input is wrong: exit 2
    │   ├── ImagesError      images.toml: file, line (when known), key
    │   └── UsageError       conflicting or unknown flags, unknown fault, unknown implementation
    └── InfraError           the harness or its processes failed: exit 3
        ├── BackendError     a role could not be started / stopped (or a backend is unavailable)
        ├── InteropError     an interop test API call failed at the HTTP level (not a DAP error)
        └── ProxyError       the fault proxy (mitmdump + addon) failed
            ├── ProxyStartError  mitmdump exited or did not listen on every port in time
            └── ControlError     the control channel refused a request or is unreachable

Errors in the user's plan, scenario or workload are :class:`faults.errors.FaultError` (exit 2).

Each message is one line. Context goes in keyword-only arguments (``role``, ``path``...).
"""

from __future__ import annotations

__all__ = ["BackendError", "ConfigError", "ControlError", "HarnessError", "ImagesError", "InfraError",
           "InteropError", "ProxyError", "ProxyStartError", "UsageError"]


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


class ProxyError(InfraError):
    """The fault proxy (the harness's own machinery) failed."""


class ProxyStartError(ProxyError):
    """mitmdump exited or did not listen on every port in time; ``log_tail`` holds the end of its
    output (``-v`` prints it)."""

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


class ControlError(ProxyError):
    """A control-channel request failed (``status`` is the HTTP status, 0 if unreachable)."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status
