"""Nothing the harness starts outlives it.

Owners of processes or containers (the backends) register with :func:`close_at_exit`: their
``close()`` runs at interpreter exit unless they closed (and :func:`forget_at_exit`-ed) before.
That is the last resort for a normal exit; hard kills are covered where the children are
started (docs/architecture.md).
"""

from __future__ import annotations

import atexit
import weakref
from typing import Any

__all__ = ["close_at_exit", "forget_at_exit"]

#: open backends (local and Docker), closed at interpreter exit if their owner did not
_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()


def close_at_exit(backend: Any) -> None:
    """Have ``backend.close()`` run at interpreter exit unless it is closed (and
    :func:`forget_at_exit`-ed) before: the last resort that never leaves children or
    containers behind."""
    _LIVE.add(backend)


def forget_at_exit(backend: Any) -> None:
    _LIVE.discard(backend)


@atexit.register
def _close_all() -> None:
    for backend in list(_LIVE):
        backend.close()
