"""Starlette applications: the interop test API plus, for Aggregators, the DAP API.

Routes (the DAP API is served under ``/``, which ``endpoint_for_task`` returns):

======================================================  ==================  ===============
path                                                    methods             roles
======================================================  ==================  ===============
/internal/test/ready                                    POST                all
/internal/test/endpoint_for_task                        POST                leader, helper
/internal/test/add_task                                 POST                leader, helper, collector
/internal/test/upload                                   POST                client
/internal/test/collection_start, collection_poll        POST                collector
/internal/test/{anything else}                          any                 404
/hpke_config                                            GET                 leader, helper
/tasks/{task}/reports                                   PUT                 leader
/tasks/{task}/aggregation_jobs/{job}                    PUT, POST, DELETE   helper
/tasks/{task}/collection_jobs/{job}                     PUT, POST, DELETE   leader
/tasks/{task}/aggregate_shares                          POST                helper
======================================================  ==================  ===============

Every body is read by :func:`dap.roles.limits.read_body` after the header-only checks
(task, authentication, Content-Type: ``Aggregator.gate``), within its kind's size limit
and the body timeout (docs/reference-impl.md, "Limits and timeouts").

The test API is for testing only (see :mod:`dap.roles.cli`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dap.roles.http import (
    Plain,
    Problem,
    RequestLog,
    interop_error,
    plain_response,
    problem_response,
    read_json,
)
from dap.roles.limits import KINDS, BodyError, BodyTimeout, ClientGone, Limits, read_body
from dap.roles.storage import GroupCommit, Store
from dap.roles.task import TaskConfigError

__all__ = ["build_app"]


def _reply_response(reply: Any) -> Response:
    return Response(reply.body, status_code=reply.status, media_type=reply.media_type,
                    headers=reply.headers)


def _body_error(err: BodyError, request: Request, task_id: bytes | None, *,
                dap: bool = True) -> Response:
    """The answer to a body that could not be read whole (:mod:`dap.roles.limits`): 413 or
    408 (then the connection closes), as a problem document (``about:blank``: DAP-09 has
    no problem type for these) or, on the test API, its JSON error; nothing for a client
    that left (the log line says so)."""
    request.state.error = err.detail
    if isinstance(err, ClientGone):
        request.state.client_gone = True
        return Response(status_code=400)  # never sent: the connection is gone
    headers = {"Connection": "close"} if isinstance(err, BodyTimeout) else None
    if dap:
        return problem_response(Problem(None, err.detail, task_id=task_id, status=err.status,
                                        title=err.title, headers=headers), request)
    return JSONResponse({"status": "error", "error": err.detail}, status_code=err.status or 400,
                        headers=headers)


def _dap(fn: Any, gate: Any = None, limits: Limits | None = None, kind: str | None = None) -> Any:
    """Wrap a synchronous DAP handler ``fn``, run in a worker thread; map errors.

    With ``kind`` (a request with a body): ``gate(kind, task_id, request)`` first (task,
    authentication, Content-Type: header-only), then the body, read within the kind's size
    limit and the body timeout, then ``fn(*path_params, request, body)``. Without: no body
    is read (DAP-09 gives these requests none) and ``fn(*path_params, request)`` runs.
    """

    async def endpoint(request: Request) -> Response:
        task_id = None
        try:
            args = list(request.path_params.values())
            if kind is not None:
                assert gate is not None and limits is not None
                task_id = gate(kind, request.path_params["task_id"], request)
                data = await read_body(request, limits.max_bytes(kind), limits.body_timeout,
                                       KINDS[kind][0])
                reply = await run_in_threadpool(fn, *args, request, data)
            else:
                reply = await run_in_threadpool(fn, *args, request)
            return _reply_response(reply)
        except Problem as p:
            return problem_response(p, request)
        except Plain as e:
            return plain_response(e)
        except BodyError as err:
            return _body_error(err, request, task_id)

    return endpoint


async def _ready(request: Request) -> Response:
    return JSONResponse({})


async def _not_found(request: Request) -> Response:
    return JSONResponse({"status": "error", "error": "unknown test API endpoint"}, status_code=404)


def _interop(fn: Any, limits: Limits) -> Any:
    """Wrap a test-API handler: JSON in, JSON out; malformed JSON is 400, a body over
    ``--max-test-api-bytes`` 413, one not received within ``--body-timeout`` 408."""

    async def endpoint(request: Request) -> Response:
        try:
            body = await read_json(request, limits.max_test_api_bytes, limits.body_timeout)
        except Plain as e:
            return JSONResponse({"status": "error", "error": e.detail}, status_code=400)
        except BodyError as err:
            return _body_error(err, request, None, dap=False)
        if not isinstance(body, dict):
            return JSONResponse({"status": "error", "error": "body must be a JSON object"},
                                status_code=400)
        try:
            result = await fn(body)
        except TaskConfigError as exc:
            return interop_error(str(exc))
        return JSONResponse(result)

    return endpoint


def _aggregator_routes(agg: Any, limits: Limits) -> list[Route]:
    async def endpoint_for_task(body: dict) -> dict:
        return {"status": "success", "endpoint": "/"}

    async def add_task(body: dict) -> dict:
        await run_in_threadpool(agg.add_task, body)
        return {"status": "success"}

    async def hpke_config(request: Request) -> Response:
        try:
            reply = await run_in_threadpool(agg.hpke_config, request.query_params.get("task_id"))
            return _reply_response(reply)
        except Problem as p:
            return problem_response(p, request)

    uploads = GroupCommit(agg.store, agg.store_uploads)

    upload_limit = limits.max_bytes("upload")

    async def upload(request: Request) -> Response:
        task_id = None
        try:
            task_id = agg.gate("upload", request.path_params["task_id"], request)
            data = await read_body(request, upload_limit, limits.body_timeout, KINDS["upload"][0])
            # Checks and HPKE open inline, not in a worker thread: ~0.2 ms of CPU, less
            # than the thread hop would cost. The write joins the next group commit; the
            # 201 is sent once that transaction has committed.
            pending = agg.upload_check(request.path_params["task_id"], request, data)
            reply = await uploads.submit(pending)
            return _reply_response(reply)
        except Problem as p:
            return problem_response(p, request)
        except BodyError as err:
            return _body_error(err, request, task_id)

    aggregation_job_methods = {
        "PUT": _dap(agg.helper_init, agg.gate, limits, "agg_init"),
        "POST": _dap(agg.helper_continue, agg.gate, limits, "agg_continue"),
        "DELETE": _dap(agg.helper_delete),
    }
    collection_job_methods = {
        "PUT": _dap(agg.collection_put, agg.gate, limits, "collection_put"),
        "POST": _dap(agg.collection_post),
        "DELETE": _dap(agg.collection_delete),
    }

    async def aggregation_job(request: Request) -> Response:
        return await aggregation_job_methods[request.method](request)

    async def collection_job(request: Request) -> Response:
        return await collection_job_methods[request.method](request)

    return [
        # Uploads first: the router tries the routes in order, and uploads are most requests.
        Route("/tasks/{task_id}/reports", upload, methods=["PUT"]),
        Route("/internal/test/endpoint_for_task", _interop(endpoint_for_task, limits),
              methods=["POST"]),
        Route("/internal/test/add_task", _interop(add_task, limits), methods=["POST"]),
        Route("/hpke_config", hpke_config, methods=["GET"]),
        Route("/tasks/{task_id}/aggregation_jobs/{job_id}", aggregation_job,
              methods=["PUT", "POST", "DELETE"]),
        Route("/tasks/{task_id}/collection_jobs/{job_id}", collection_job,
              methods=["PUT", "POST", "DELETE"]),
        Route("/tasks/{task_id}/aggregate_shares",
              _dap(agg.aggregate_share, agg.gate, limits, "agg_share"), methods=["POST"]),
    ]


def build_app(args: argparse.Namespace) -> Any:
    """The ASGI app for ``args.role``, wrapped in the request log."""
    role = args.role
    routes: list[Route] = [Route("/internal/test/ready", _ready, methods=["POST", "GET"])]
    lifespan = None
    log_path = args.state_dir / "requests.log"
    limits = Limits.from_args(args)

    if role in ("leader", "helper"):
        from dap.roles.aggregator import Aggregator

        store = Store(args.state_dir / f"{role}.sqlite3", synchronous=args.sync)
        agg = Aggregator(store, role=role, clock_skew=args.clock_skew)
        routes += _aggregator_routes(agg, limits)
        if role == "leader":
            from dap.roles.leader import LeaderDriver

            @contextlib.asynccontextmanager
            async def lifespan(app: Any) -> AsyncIterator[None]:
                driver = LeaderDriver(
                    agg, job_size=args.job_size, min_job_size=args.min_job_size,
                    job_interval=args.job_interval, collect_interval=args.collect_interval,
                    retry_budget=args.retry_budget, request_timeout=args.request_timeout,
                    log=logger.write,
                )
                task = asyncio.create_task(driver.run())
                try:
                    yield
                finally:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
    elif role == "client":
        from dap.roles.client import Client

        client = Client()
        routes.append(Route("/internal/test/upload", _interop(client.upload, limits),
                            methods=["POST"]))

        @contextlib.asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[None]:
            try:
                yield
            finally:
                await client.aclose()
    elif role == "collector":
        from dap.roles.collector import Collector

        store = Store(args.state_dir / "collector.sqlite3", synchronous=args.sync)
        collector = Collector(store)
        routes += [
            Route("/internal/test/add_task", _interop(collector.add_task, limits), methods=["POST"]),
            Route("/internal/test/collection_start", _interop(collector.collection_start, limits),
                  methods=["POST"]),
            Route("/internal/test/collection_poll", _interop(collector.collection_poll, limits),
                  methods=["POST"]),
        ]

        @contextlib.asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[None]:
            try:
                yield
            finally:
                await collector.aclose()
    else:  # pragma: no cover - argparse restricts the choices
        raise ValueError(role)

    routes.append(Route("/internal/test/{rest:path}", _not_found,
                        methods=["GET", "POST", "PUT", "DELETE"]))
    app = Starlette(routes=routes, lifespan=lifespan)
    logger = RequestLog(app, role=role, log_path=log_path)
    logger.write({"event": "start", "role": role, "host": args.host, "port": args.port,
                  "state_dir": str(args.state_dir), "note": "the /internal/test API is for testing only"})
    return logger

