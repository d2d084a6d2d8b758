"""Request size limits and read timeouts: what a role reads from a client, and for how long.

Two layers, because uvicorn (0.54, httptools) bounds neither a request's headers nor its
body in size or time:

* **ASGI level** (:func:`read_body`): every endpoint that takes a body reads it here,
  after the checks that need only the headers (task, authentication, Content-Type:
  :meth:`dap.roles.aggregator.Aggregator.gate`). ``Content-Length`` above the endpoint's
  limit is refused before a byte is read; a chunked body is counted while it streams.
  The whole body must arrive within ``body_timeout`` seconds. Outcomes:
  :class:`BodyTooLarge` (413), :class:`BodyTimeout` (408, connection closed),
  :class:`ClientGone` (the client disconnected: nothing to answer, one log line).
* **Connection level** (:func:`guarded_protocol`, a subclass of uvicorn's httptools
  protocol): the request line and headers must arrive within ``header_timeout`` seconds
  of the connection opening (or of the request's first byte on a kept-alive connection)
  and fit in ``max_header_bytes``; a response sent before the request body was read
  (an early 403, 400, 404 or 413) is followed by at most ``linger_timeout`` seconds and
  ``linger_bytes`` of the rest of the body, read and discarded (never buffered), then
  the connection is closed. Discarding for a moment instead of closing at once lets the
  client finish writing and read the answer (a close with unread input sends a TCP reset,
  which can destroy the answer in flight).

The limits are per kind of body, i.e. per media type the endpoint accepts
(:data:`KINDS`); the role CLI sets them (docs/reference-impl.md, "Limits and timeouts").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import attrs

__all__ = [
    "KINDS",
    "BodyError",
    "BodyTimeout",
    "BodyTooLarge",
    "ClientGone",
    "Limits",
    "guarded_protocol",
    "read_body",
]

MiB = 1 << 20

#: kind of body -> (what it is, the Limits field holding its maximum size)
KINDS: dict[str, tuple[str, str]] = {
    "upload": ("application/dap-report (upload)", "max_upload_bytes"),
    "agg_init": ("application/dap-aggregation-job-init-req", "max_agg_job_bytes"),
    "agg_continue": ("application/dap-aggregation-job-continue-req", "max_agg_job_bytes"),
    "agg_share": ("application/dap-aggregate-share-req", "max_agg_share_req_bytes"),
    "collection_put": ("application/dap-collect-req", "max_collect_req_bytes"),
    "test_api": ("JSON body of the /internal/test API", "max_test_api_bytes"),
}


@attrs.frozen
class Limits:
    """Size limits (bytes) and timeouts (seconds) of one role process."""

    max_upload_bytes: int = 1 * MiB
    max_agg_job_bytes: int = 16 * MiB
    max_agg_share_req_bytes: int = 1 * MiB
    max_collect_req_bytes: int = 1 * MiB
    max_test_api_bytes: int = 4 * MiB
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    #: after an early answer: discard at most this much of the unread body, then close
    linger_bytes: int = 1 * MiB

    @property
    def linger_timeout(self) -> float:
        """Seconds the rest of a body is discarded after an early answer (= body_timeout)."""
        return self.body_timeout

    def max_bytes(self, kind: str) -> int:
        return int(getattr(self, KINDS[kind][1]))

    @classmethod
    def from_args(cls, args: Any) -> Limits:
        """From the role CLI's namespace; a missing attribute keeps its default."""
        fields = [f.name for f in attrs.fields(cls)]
        return cls(**{f: getattr(args, f) for f in fields if getattr(args, f, None) is not None})


class BodyError(Exception):
    """The body could not be read whole: ``received`` bytes so far, ``announced`` by
    Content-Length (None: chunked or absent)."""

    status: int | None = None
    title = ""

    def __init__(self, detail: str, *, received: int, announced: int | None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.received = received
        self.announced = announced


class BodyTooLarge(BodyError):
    """413: larger than the endpoint's limit (known from Content-Length, or counted)."""

    status = 413
    title = "Content Too Large"


class BodyTimeout(BodyError):
    """408: the body did not arrive within ``body_timeout``; the connection is closed."""

    status = 408
    title = "Request Timeout"


class ClientGone(BodyError):
    """The client closed the connection before the body was complete: nothing to answer."""


def _announced(headers: Any) -> int | None:
    values = headers.getlist("content-length")
    if len(values) != 1:
        return None  # chunked or none (httptools refuses conflicting Content-Lengths)
    try:
        return int(values[0])
    except ValueError:
        return None


async def read_body(request: Any, limit: int, timeout: float, what: str = "request body") -> bytes:
    """The whole body of ``request`` (a Starlette Request), at most ``limit`` bytes, read
    within ``timeout`` seconds. Raises :class:`BodyTooLarge` (before reading anything if
    Content-Length says so), :class:`BodyTimeout` or :class:`ClientGone`."""
    announced = _announced(request.headers)
    if announced is not None and announced > limit:
        raise BodyTooLarge(f"{what}: Content-Length {announced} exceeds the limit of {limit}"
                           " bytes", received=0, announced=announced)
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone(f"client disconnected after {size} of "
                                     f"{announced if announced is not None else '?'} body bytes",
                                     received=size, announced=announced)
                chunk = message.get("body", b"")
                if chunk:
                    size += len(chunk)
                    if size > limit:
                        raise BodyTooLarge(f"{what} exceeds the limit of {limit} bytes",
                                           received=size, announced=announced)
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise BodyTimeout(f"{what} not received within {timeout:g} s ({size} of "
                          f"{announced if announced is not None else '?'} bytes)",
                          received=size, announced=announced) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def guarded_protocol(limits: Limits, log: Callable[[dict], None] | None = None) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with the connection-level limits of :class:`Limits`
    (``uvicorn.Config(http=...)``). ``log`` gets one record per connection it drops."""
    import time

    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        """Header timeout and size cap, and a bounded discard after an early answer."""

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._in_headers = True  # between a request's first byte and its end of headers
            self._header_bytes = 0
            self._message_done = True  # the parser has seen the current request's end
            self._header_timer: asyncio.TimerHandle | None = None
            self._linger_timer: asyncio.TimerHandle | None = None
            self._discarded = 0
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_timers()
            super().connection_lost(exc)

        # --- headers: time and size ---------------------------------------------------

        def data_received(self, data: bytes) -> None:
            was_in_headers = self._in_headers
            super().data_received(data)
            if was_in_headers and self._in_headers and not self.transport.is_closing():
                # Everything fed since the request began is header bytes (had the headers
                # been complete, on_headers_complete would have reset the count).
                self._header_bytes += len(data)
                if self._header_bytes > limits.max_header_bytes:
                    self._drop(f"request headers exceed {limits.max_header_bytes} bytes",
                               b"431 Request Header Fields Too Large")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_headers = True
            self._message_done = False
            self._arm_header_timer()

        def on_headers_complete(self) -> None:
            self._in_headers = False
            self._header_bytes = 0
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().on_headers_complete()

        def _arm_header_timer(self) -> None:
            # From the connection's opening (first request) or the request's first byte;
            # never pushed back by bytes that trickle in.
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(limits.header_timeout,
                                                          self._header_timeout)

        def _header_timeout(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self._drop(f"request headers not received within {limits.header_timeout:g} s",
                           b"408 Request Timeout")

        # --- after an early answer: discard the rest of the body, within bounds ----------

        def on_body(self, body: bytes) -> None:
            cycle = self.cycle
            if cycle is not None and cycle.response_complete:
                self._discarded += len(body)
                if self._discarded > limits.linger_bytes and not self.transport.is_closing():
                    self._drop(f"request body still arriving after the answer ({self._discarded}"
                               " bytes discarded)")
                return  # uvicorn discards it too
            super().on_body(body)

        def on_message_complete(self) -> None:
            self._message_done = True
            if self._linger_timer is not None:
                self._linger_timer.cancel()
                self._linger_timer = None
                # The body's bytes cancelled uvicorn's keep-alive timer: arm it again.
                if (not self.pipeline and self.timeout_keep_alive_task is None
                        and not self.transport.is_closing()):
                    self.timeout_keep_alive_task = self.loop.call_later(
                        self.timeout_keep_alive, self.timeout_keep_alive_handler)
            super().on_message_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            cycle = self.cycle
            if (not self._message_done and cycle is not None and cycle.response_complete
                    and not self.transport.is_closing() and self._linger_timer is None):
                self._discarded = 0
                self._linger_timer = self.loop.call_later(limits.linger_timeout, self._linger_end)

        def _linger_end(self) -> None:
            self._linger_timer = None
            if not self.transport.is_closing():
                self._drop(f"request body unfinished {limits.linger_timeout:g} s after the answer")

        # --- dropping a connection -------------------------------------------------------

        def _cancel_timers(self) -> None:
            for name in ("_header_timer", "_linger_timer"):
                timer = getattr(self, name, None)
                if timer is not None:
                    timer.cancel()
                    setattr(self, name, None)

        def _drop(self, why: str, status: bytes | None = None) -> None:
            """Close the connection; first answer ``status`` if no request is in progress."""
            self._cancel_timers()
            idle = self.cycle is None or self.cycle.response_complete
            if status is not None and idle:
                self.transport.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\n"
                                     b"connection: close\r\n\r\n")
            self.transport.close()
            if log is not None:
                client = self.client
                log({"ts": round(time.time(), 3), "event": "connection_dropped", "why": why,
                     "client": f"{client[0]}:{client[1]}" if client else None})

    return GuardedHttpToolsProtocol
