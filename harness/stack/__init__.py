"""What a run stands on: the processes the harness starts and talks to.

Backends that start the four roles (:mod:`~harness.stack.backend`: local processes;
:mod:`~harness.stack.docker`: containers on a dockerd, :mod:`~harness.stack.dockerd` a
private one for tests), ``images.toml`` (:mod:`~harness.stack.images`), loopback ports
(:mod:`~harness.stack.ports`), the fault proxy process (:mod:`~harness.stack.proxy`) and its
control channel (:mod:`~harness.stack.control`), and the interop test API
(:mod:`~harness.stack.interop`). Nothing here judges a run.
"""
