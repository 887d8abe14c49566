"""The service's event loop: uvloop, with listening sockets accepted in batches (uvicorn ``loop="service.loop:new_event_loop"``).

libuv accepts one connection per event-loop iteration (libuv/libuv#3696, since libuv 1.45). Under
load an iteration first serves every ready keep-alive connection (~25 ms with 500 busy ones per
worker), so a burst of new connections waits in the kernel's accept queue, draining at ~40/s per
worker: in the issue #8 load test (`wrk -c1000`) the last connections waited 1-3 s and wrk counted
socket timeouts while the workers had the CPU to serve them. Servers created on an already bound
socket (how `service.main` hands every worker its socket) are therefore accepted here as asyncio's
own selector loop does: up to `backlog` connections per readiness event, each handed to uvloop with
``connect_accepted_socket`` so the transport is uvloop's native one. Other servers (host/port, TLS,
Unix sockets) use uvloop unchanged. Without uvloop (e.g. Windows) the standard asyncio loop is used.
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


def per_worker_listeners() -> bool:
    """True when servers can listen on their own SO_REUSEPORT sockets (uvloop present, Linux-like OS)."""
    return _LOOP_CLASS is not None and hasattr(socket, "SO_REUSEPORT")


def own_listener(shared: socket.socket) -> socket.socket:
    """A new socket with SO_REUSEPORT (and the shared one's TCP_NODELAY) bound to `shared`'s address."""
    sock = socket.socket(shared.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        nodelay = shared.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, nodelay)
        sock.bind(shared.getsockname())
    except OSError:
        sock.close()
        raise
    return sock


def _reuses_port(sock: socket.socket) -> bool:
    """True when `sock` was bound with SO_REUSEPORT (the supervisor's address-holding socket)."""
    return hasattr(socket, "SO_REUSEPORT") and bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))


class BatchAcceptServer(asyncio.AbstractServer):
    """Serve one listening socket on `loop`, accepting up to `batch` connections per readiness event."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, factory: ProtocolFactory, batch: int) -> None:
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
    """uvloop's Loop subclassed with batched accept on existing sockets, or None when uvloop is missing."""
    try:
        import uvloop
    except ImportError:
        return None

    class BatchAcceptLoop(uvloop.Loop):  # type: ignore[misc, name-defined]
        """uvloop.Loop whose servers on an existing plain TCP socket accept in batches (see module doc)."""

        async def create_server(self, protocol_factory: ProtocolFactory, *args: Any, **kwargs: Any) -> asyncio.AbstractServer:
            """`BatchAcceptServer` for ``create_server(factory, sock=<TCP socket>)``; uvloop's server otherwise."""
            sock = kwargs.get("sock")
            plain = not args and kwargs.get("ssl") is None and kwargs.get("host") is None and kwargs.get("port") is None
            if sock is None or not plain or sock.family not in (socket.AF_INET, socket.AF_INET6):
                return await super().create_server(protocol_factory, *args, **kwargs)
            if _reuses_port(sock):  # the supervisor only holds the address: listen on this worker's own socket
                sock = own_listener(sock)
            server = BatchAcceptServer(self, sock, protocol_factory, kwargs.get("backlog", 100))
            if kwargs.get("start_serving", True):
                await server.start_serving()
            return server

    return BatchAcceptLoop


_LOOP_CLASS = _uvloop_class()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvicorn's loop hook (``loop="service.loop:new_event_loop"``): a batch-accepting uvloop loop, else asyncio's."""
    return _LOOP_CLASS() if _LOOP_CLASS is not None else asyncio.new_event_loop()


def loop_name() -> str:
    """What `new_event_loop` runs on this machine (for reports)."""
    return "asyncio" if _LOOP_CLASS is None else "uvloop, batched accept"
