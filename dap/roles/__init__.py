"""Reference DAP-09 roles (Leader, Helper, Client, Collector) behind the interop test API.

Run one with ``python -m dap.roles --role ROLE --port N --state-dir DIR``; see
``docs/reference-impl.md``. The ``/internal/test/*`` API is for testing only.

Modules, each importing only ones listed before it (no two import each other):
:mod:`~dap.roles.bugs` (test-only bug switches), :mod:`~dap.roles.task` (task model),
:mod:`~dap.roles.storage` (SQLite), :mod:`~dap.roles.buckets` (checksums, bucket keys,
intervals), :mod:`~dap.roles.limits` (body size limits, read timeouts, connection
guards), :mod:`~dap.roles.http` (problem documents, replies, auth, media types, request
log), :mod:`~dap.roles.upstream` (requests to another DAP server: URLs, retry rules, the
Helper-answer classifier), :mod:`~dap.roles.vdafs`, :mod:`~dap.roles.param_agg` /
:mod:`~dap.roles.param_helper` (Poplar1 tables and Helper), :mod:`~dap.roles.aggregator`
(Leader and Helper DAP endpoints), :mod:`~dap.roles.param_leader` /
:mod:`~dap.roles.leader` (the Leader's drivers), :mod:`~dap.roles.client`,
:mod:`~dap.roles.collector`, :mod:`~dap.roles.server` (the Starlette apps),
:mod:`~dap.roles.cli`.
"""
