"""Limits a request meets before anything else reads it: header size and count, read timeouts and a
connection cap, enforced in the HTTP protocol itself (before routing and before authentication).

uvicorn's httptools protocol buffers a request's URL and headers without a bound and waits for
them without a deadline: a few connections sending endless headers grow the process by hundreds
of megabytes, and a thousand half-sent requests hold every file descriptor. :func:`guarded_protocol`
makes a subclass that

* answers **431** and closes the connection when the request line and headers exceed
  ``max_header_bytes`` or ``max_headers`` fields;
* closes a connection whose request head is not complete ``header_timeout`` seconds after the
  connection opened (or after the previous response), and one whose body is not complete
  ``body_timeout`` seconds after its head (a **408** is sent first when nothing has been answered);
* answers **503** and closes at once when more than ``max_connections`` connections are open.

Everything else is uvicorn's own protocol, unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["GuardedHttpToolsProtocol", "guarded_protocol"]


def _response(status: int, reason: str, message: str) -> bytes:
    body = message.encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of the module docstring (class attributes,
    set by :func:`guarded_protocol`)."""

    max_header_bytes = 16_384
    max_headers = 100
    header_timeout = 10.0
    body_timeout = 30.0
    max_connections = 512

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refused = False
        self._head_bytes = 0
        self._n_headers = 0
        self._timer: asyncio.TimerHandle | None = None

    # -- timers ------------------------------------------------------------------------------
    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_slow(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self._refuse(408, "Request Timeout", "the request was not sent in time")
        else:  # the app has the request: just drop the connection
            self._refused = True
            self.transport.close()

    def _refuse(self, status: int, reason: str, message: str) -> None:
        self._refused = True
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(_response(status, reason, message))
            self.transport.close()

    # -- connection --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._refuse(503, "Service Unavailable", "too many connections, retry later")
            return
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._refused and not self.transport.is_closing():
            self._arm(self.header_timeout)  # the next request's head must come in time too

    # -- parser callbacks --------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._refused:
            return
        super().on_message_begin()
        self._head_bytes = 0
        self._n_headers = 0

    def on_url(self, url: bytes) -> None:
        if self._refused:
            return
        self._head_bytes += len(url)
        if self._head_bytes > self.max_header_bytes:
            self._refuse(414, "URI Too Long", "the request line is too long")
            return
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        self._head_bytes += len(name) + len(value)
        self._n_headers += 1
        if self._head_bytes > self.max_header_bytes or self._n_headers > self.max_headers:
            self._refuse(
                431,
                "Request Header Fields Too Large",
                f"headers must be at most {self.max_header_bytes} bytes in at most "
                f"{self.max_headers} fields",
            )
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._arm(self.body_timeout)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        super().on_message_complete()


def guarded_protocol(
    *,
    max_header_bytes: int = 16_384,
    max_headers: int = 100,
    header_timeout: float = 10.0,
    body_timeout: float = 30.0,
    max_connections: int = 512,
) -> type[GuardedHttpToolsProtocol]:
    """A :class:`GuardedHttpToolsProtocol` subclass with these limits (uvicorn's ``http=``)."""
    return type(
        "BanditHttpProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "max_header_bytes": int(max_header_bytes),
            "max_headers": int(max_headers),
            "header_timeout": float(header_timeout),
            "body_timeout": float(body_timeout),
            "max_connections": int(max_connections),
        },
    )
