"""The dap-faultrun mitmproxy addon: the proxy side of the fault plan.

- :class:`~proxy_addons.addon.FaultProxyAddon`: classify each flow (link, kind), record it,
  match the plan's rules, apply actions (loaded by ``faultproxy.py``);
- :mod:`proxy_addons.runtime`: the per-run state a plan runs against (counters, held flows);
- :class:`~proxy_addons.control.ControlServer`: the control channel inside the proxy;
- :mod:`proxy_addons.contentview`: the DAP content view for mitmproxy's UIs.

What starts mitmdump with this addon and talks to its control channel is the harness's:
:mod:`harness.stack.proxy`, :mod:`harness.stack.control`.
"""
