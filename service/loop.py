"""The service's event loop: uvloop whose servers on an existing TCP socket accept queued connections in batches.

One small interface: uvicorn's custom loop-factory setting, ``loop="service.loop:new_event_loop"``
(`service.workers.LOOP`). uvicorn creates its server with ``loop.create_server(protocol_factory,
sock=<listening socket>, ssl=..., backlog=...)``; that one call returns a `BatchAcceptServer` here,
every other server is uvloop's own. ``tests/test_service_loop.py`` checks that uvicorn still creates
its server that way. Without uvloop (e.g. Windows) the standard asyncio loop is used.

Why this is kept (issue 15 measured the supported alternatives back to back; loadtest/README.md):
libuv, hence uvloop, accepts one connection per loop iteration since libuv 1.45 (libuv/libuv#3696).
Under load an iteration first serves every ready keep-alive connection, so a burst of new
connections waits in the kernel's accept queue; in the issue #8 load test (``wrk -c1000``) the last
ones waited 1-3 s and wrk counted socket timeouts. uvicorn's stock uvloop server on per-worker
SO_REUSEPORT sockets still counted 94 socket timeouts at -c1000 in one of six runs (this loop: none
in six, same machine, alternated), and the stock asyncio loop, which accepts in batches, served 27 %
fewer requests per second at -c1000 (11.3k vs 15.5k, paired run). So servers created on an already
bound socket are accepted here as asyncio's
selector loop does: up to ``backlog`` connections per readiness event, each handed to uvloop with
``connect_accepted_socket`` so the transport is uvloop's native one.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("recsys.service")

ACCEPT_RETRY_DELAY_S = 1.0  # as asyncio: pause accepting this long when out of file descriptors/memory
_RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
ProtocolFactory = Callable[[], asyncio.BaseProtocol]


class BatchAcceptServer(asyncio.AbstractServer):
    """Serve one listening socket on `loop`, accepting up to `batch` connections per readiness event."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, factory: ProtocolFactory, batch: int
    ) -> None:
        """Remember the socket and factory; `start_serving` begins accepting."""
        self._loop = loop
        self._sock = sock
        self._factory = factory
        self._batch = max(1, int(batch))
        self._serving = False
        self._closed = asyncio.Event()
        self._pending: set[asyncio.Task[Any]] = set()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening socket (empty once closed)."""
        return () if self._closed.is_set() else (self._sock,)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        """The loop this server accepts on."""
        return self._loop

    def is_serving(self) -> bool:
        """True while accepting connections."""
        return self._serving

    async def start_serving(self) -> None:
        """Listen with the server's backlog and watch the socket for incoming connections."""
        if self._serving or self._closed.is_set():
            return
        self._sock.setblocking(False)
        self._sock.listen(self._batch)
        self._loop.add_reader(self._sock.fileno(), self._accept_ready)
        self._serving = True

    async def serve_forever(self) -> None:
        """Serve until closed."""
        await self.start_serving()
        await self._closed.wait()

    def close(self) -> None:
        """Stop accepting and close the listening socket (open connections are the protocol's business)."""
        if self._closed.is_set():
            return
        if self._serving:
            self._loop.remove_reader(self._sock.fileno())
            self._serving = False
        self._sock.close()
        self._closed.set()

    async def wait_closed(self) -> None:
        """Return once `close` has run and every accepted connection has been handed to its transport."""
        await self._closed.wait()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def _accept_ready(self) -> None:
        """Accept every queued connection, up to the batch size, and start a transport for each."""
        for _ in range(self._batch):
            try:
                conn, _addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:  # the client gave up while queued: try the next one
                continue
            except OSError as exc:
                if exc.errno not in _RESOURCE_ERRORS:
                    raise
                logger.error("accept() failed (%s); pausing new connections for %.0f s", exc, ACCEPT_RETRY_DELAY_S)
                self._loop.remove_reader(self._sock.fileno())
                self._loop.call_later(ACCEPT_RETRY_DELAY_S, self._resume)
                return
            conn.setblocking(False)
            task = self._loop.create_task(self._loop.connect_accepted_socket(self._factory, conn))
            self._pending.add(task)
            task.add_done_callback(self._handed_over)

    def _resume(self) -> None:
        """Watch the listening socket again after a resource-error pause."""
        if self._serving and not self._closed.is_set():
            self._loop.add_reader(self._sock.fileno(), self._accept_ready)

    def _handed_over(self, task: asyncio.Task[Any]) -> None:
        """Forget a finished hand-over; a connection reset before its transport started is logged, not raised."""
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.debug("connection dropped before it was served: %r", task.exception())


def _uvloop_class() -> type[asyncio.AbstractEventLoop] | None:
    """uvloop's Loop with batched accept on existing sockets, or None when uvloop is missing."""
    try:
        import uvloop
    except ImportError:
        return None

    class BatchAcceptLoop(uvloop.Loop):
        """uvloop.Loop whose servers on an existing plain TCP socket accept in batches (see the module doc)."""

        async def create_server(  # type: ignore[override]  # uvloop's signature, narrowed to what uvicorn passes
            self, protocol_factory: ProtocolFactory, *args: Any, **kwargs: Any
        ) -> asyncio.AbstractServer:
            """`BatchAcceptServer` for ``create_server(factory, sock=<TCP socket>)``; uvloop's server otherwise."""
            sock = kwargs.get("sock")
            plain = not args and kwargs.get("ssl") is None and kwargs.get("host") is None and kwargs.get("port") is None
            if sock is None or not plain or sock.family not in (socket.AF_INET, socket.AF_INET6):
                return await super().create_server(protocol_factory, *args, **kwargs)
            server = BatchAcceptServer(self, sock, protocol_factory, kwargs.get("backlog", 100))
            if kwargs.get("start_serving", True):
                await server.start_serving()
            return server

    return BatchAcceptLoop


_LOOP_CLASS = _uvloop_class()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvicorn's loop factory (``service.workers.LOOP``): a batch-accepting uvloop loop, else asyncio's."""
    return _LOOP_CLASS() if _LOOP_CLASS is not None else asyncio.new_event_loop()


def loop_name() -> str:
    """What `new_event_loop` runs on this machine (for reports)."""
    return "asyncio" if _LOOP_CLASS is None else "uvloop, batched accept"
