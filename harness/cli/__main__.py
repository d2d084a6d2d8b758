"""``python -m harness.cli``: the same as ``faultrun``."""

from harness.cli.main import main

raise SystemExit(main())
