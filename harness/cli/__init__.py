"""The ``faultrun`` command: ``faultrun [--fault ...]`` (:mod:`~harness.cli.faultrun`),
``faultrun analyze DIR`` (:mod:`~harness.cli.analyze`), ``faultrun campaign ...``
(:mod:`~harness.cli.campaign`); :func:`~harness.cli.main.main` dispatches (docs/cli.md)."""

from harness.cli.main import main

__all__ = ["main"]
