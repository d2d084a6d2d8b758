"""``python -m dap.roles --role leader|helper|client|collector ...`` (see :mod:`dap.roles.cli`)."""

import sys

from dap.roles.cli import main

sys.exit(main())
