"""DAP-09 protocol core: wire codec, HPKE, VDAF-08 (Prio3), reference roles.

Protocol knowledge only, no I/O policy. Both ``proxy_addons`` and the
reference roles import this package; nothing in it imports them.
"""
