"""How `paracite serve` runs the app under uvicorn: timeouts and limits for hostile clients."""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from indexer.errors import ParaciteError

# A keep-alive connection is closed after this many idle seconds (uvicorn's default).
KEEP_ALIVE_SECONDS = 5
# A client must send a complete request head this soon after connecting or after a response.
REQUEST_HEAD_SECONDS = 10.0
# Connections and requests served at once; beyond it uvicorn answers 503 at once.
MAX_CONCURRENCY = 128
# Largest request head (request line and headers), in bytes.
MAX_HEAD_BYTES = 16 * 1024


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for every request head.

    uvicorn times a connection out only once it has answered a request, so a client that
    connects and stays silent, or sends its headers a byte at a time, holds a connection
    for ever (100 silent connections were all still open after 75 s).
    """

    head_timeout = REQUEST_HEAD_SECONDS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_after: object = None
        self._start_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not self._waiting_after:
            self._stop_deadline()  # a new request has begun; its head is complete

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request may already have begun (a new, unfinished cycle): no deadline.
        if not self.transport.is_closing() and self.cycle.response_complete:
            self._start_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def _start_deadline(self) -> None:
        self._stop_deadline()
        self._waiting_after = self.cycle
        self._deadline = self.loop.call_later(self.head_timeout, self._close_if_open)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _close_if_open(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def uvicorn_config(
    app: FastAPI, host: str, port: int, *, head_timeout: float = REQUEST_HEAD_SECONDS
) -> uvicorn.Config:
    """The uvicorn settings of `paracite serve` (tests pass a short `head_timeout`)."""
    protocol = type("Protocol", (GuardedH11Protocol,), {"head_timeout": head_timeout})
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        limit_concurrency=MAX_CONCURRENCY,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        log_level="info",
    )


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, or a one-line error (a busy port, an unknown address).

    Bound before uvicorn starts, so that nothing claims to be serving on a port it never got.
    """
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP named, not left 0: asyncio disables Nagle's algorithm only on sockets
        # that say they are TCP, and with it on, a keep-alive client waited 40 ms for every
        # response body (its delayed ACK of the headers): 48 ms a question instead of 7.
        listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    except OSError as error:
        reason = error.strerror or str(error)
        raise ParaciteError(f"cannot listen on {host}:{port}: {reason}") from None
    return listener
