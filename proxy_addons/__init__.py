"""The dap-faultrun mitmproxy addons and the harness-side owner of the proxy process.

- :class:`~proxy_addons.owner.FaultProxy`: start/stop a mitmdump child serving every link.
- :class:`~proxy_addons.control.ControlClient`: load plans, reset, read history.
- :class:`~proxy_addons.addon.FaultProxyAddon`: the addon (loaded by ``faultproxy.py``).
- :mod:`proxy_addons.contentview`: the DAP content view.
"""

from proxy_addons.control import ControlClient, ControlServer
from proxy_addons.owner import FaultProxy, free_port, mitmdump_command

__all__ = ["ControlClient", "ControlServer", "FaultProxy", "free_port", "mitmdump_command"]
