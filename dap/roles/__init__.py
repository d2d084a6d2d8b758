"""Reference DAP-09 roles (Leader, Helper, Client, Collector) behind the interop test API.

Run one with ``python -m dap.roles --role ROLE --port N --state-dir DIR``; see
``docs/reference-impl.md``. The ``/internal/test/*`` API is for testing only.

Modules: :mod:`~dap.roles.storage` (SQLite), :mod:`~dap.roles.task` (task model),
:mod:`~dap.roles.http` (problem documents, auth, media types, request log),
:mod:`~dap.roles.aggregator` (Leader and Helper DAP endpoints and drivers),
:mod:`~dap.roles.client`, :mod:`~dap.roles.collector`, :mod:`~dap.roles.server`
(the Starlette apps), :mod:`~dap.roles.cli`.
"""
