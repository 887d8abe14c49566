"""service.loop: a burst of queued connections is accepted in one readiness event, and uvicorn serves through it."""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn

from service import loop as service_loop
from service.loop import BatchAcceptServer, new_event_loop
from service.processes import free_port, http_ok, wait_until
from service.workers import LOOP, listener

pytest.importorskip("uvloop")  # the batched-accept loop is the uvloop one; without it asyncio's loop is used as is

BURST = 50


class Recorder(asyncio.Protocol):
    """Counts connections made on it (shared list) and echoes nothing."""

    def __init__(self, made: list[asyncio.BaseTransport]) -> None:
        """Append each new transport to `made`."""
        self.made = made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Record the transport."""
        self.made.append(transport)


def bound_socket(reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to 127.0.0.1 on a free port, as service.main hands it to the servers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def connect_many(port: int, count: int) -> list[socket.socket]:
    """`count` blocking client connections to 127.0.0.1:`port` (the kernel completes them into the accept queue)."""
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Let the loop run until `predicate` holds (a generous bound, never a timing assertion)."""
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    pytest.fail(f"timed out waiting for {what}")


def run(coro_factory: Callable[[], object]) -> None:
    """Run a coroutine on the service's loop."""
    loop = new_event_loop()
    try:
        loop.run_until_complete(coro_factory())  # type: ignore[arg-type]
    finally:
        loop.close()


def test_the_service_loop_is_uvloop_with_batched_servers() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert type(loop).__name__ == "BatchAcceptLoop"
        sock = bound_socket()
        server = await loop.create_server(lambda: Recorder([]), sock=sock, backlog=128)
        assert isinstance(server, BatchAcceptServer) and server.is_serving() and list(server.sockets) == [sock]
        server.close()
        await server.wait_closed()
        assert not server.is_serving() and len(server.sockets) == 0 and sock.fileno() == -1
        plain = await loop.create_server(lambda: Recorder([]), host="127.0.0.1", port=0)  # not ours: uvloop's own
        assert not isinstance(plain, BatchAcceptServer)
        plain.close()
        await plain.wait_closed()

    run(main)


def test_a_queued_burst_is_accepted_in_one_readiness_event() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        made: list[asyncio.BaseTransport] = []
        sock = bound_socket()
        server = await loop.create_server(lambda: Recorder(made), sock=sock, backlog=128, start_serving=False)
        assert isinstance(server, BatchAcceptServer) and not server.is_serving()
        sock.listen(128)
        clients = connect_many(sock.getsockname()[1], BURST)  # all queued before the server looks at the socket
        try:
            await server.start_serving()
            loop.remove_reader(sock.fileno())  # drive the reader by hand: exactly one readiness callback
            server._accept_ready()
            await until(lambda: len(made) == BURST, "every queued connection to get a transport")
            with pytest.raises(BlockingIOError):  # nothing left in the kernel's accept queue
                sock.accept()
        finally:
            for c in clients:
                c.close()
            server.close()
            await server.wait_closed()

    run(main)


async def tiny_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app answering every HTTP request with 200 and an empty body."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def test_uvicorn_creates_its_server_through_the_batched_accept_loop() -> None:
    port = free_port()
    config = uvicorn.Config(tiny_asgi, loop=LOOP, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener("127.0.0.1", port)]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, "uvicorn to start", timeout_s=30)
        # uvicorn calls loop.create_server(factory, sock=...): the one call service.loop takes over
        assert [type(s).__name__ for s in server.servers] == ["BatchAcceptServer"]
        assert http_ok(f"http://127.0.0.1:{port}/")
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class OutOfFiles:
    """A listening-socket stand-in whose accept fails like a process out of file descriptors."""

    def __init__(self, real: socket.socket) -> None:
        """Wrap `real` (for fileno/close)."""
        self.real = real
        self.calls = 0

    def accept(self) -> tuple[socket.socket, object]:
        """Always EMFILE."""
        self.calls += 1
        raise OSError(errno.EMFILE, "Too many open files")

    def __getattr__(self, name: str) -> object:
        """Everything else from the real socket."""
        return getattr(self.real, name)


def test_running_out_of_descriptors_pauses_accepting_then_resumes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_loop, "ACCEPT_RETRY_DELAY_S", 0.01)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        real = bound_socket()
        fake = OutOfFiles(real)
        server = BatchAcceptServer(loop, fake, lambda: Recorder([]), 16)  # type: ignore[arg-type]
        resumed: list[bool] = []
        monkeypatch.setattr(server, "_resume", lambda: resumed.append(True))
        await server.start_serving()
        client = await asyncio.to_thread(connect_many, real.getsockname()[1], 1)  # the socket stays readable
        try:
            await until(lambda: bool(resumed), "the accept pause to end")
            # one failed accept, then the (level-triggered, still readable) socket was no longer watched
            assert fake.calls == 1
        finally:
            client[0].close()
            server.close()
            await server.wait_closed()

    run(main)
