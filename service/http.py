"""uvicorn's httptools protocol with a header timeout: a connection must send each request's headers in time.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but sets no limit on how long a client may
take to send a request's headers, so a client that opens connections and trickles header bytes ("slowloris")
holds them, and their file descriptors, forever. ``HeaderTimeoutProtocol`` arms a timer when a connection is
made and whenever a request's headers are still incomplete after a read, disarms it when they are complete, and
closes the connection when it fires (``RECSYS_HEADER_TIMEOUT_S``, default 10 s; 0 = off). The body is bounded by
the request deadline (``service.security.Deadline``). Selected with uvicorn's ``http`` setting
(``service.main.uvicorn_config``); tests/test_service_uvicorn.py checks it against a real server.

A request whose headers arrive in one read (every normal client) costs two attribute writes: the timer is armed
only when a read ends inside the headers.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT_ENV = "RECSYS_HEADER_TIMEOUT_S"
DEFAULT_HEADER_TIMEOUT_S = 10.0


def header_timeout_s() -> float:
    """The header timeout from the environment (the service exports its settings there for every worker)."""
    try:
        return float(os.environ.get(HEADER_TIMEOUT_ENV, DEFAULT_HEADER_TIMEOUT_S))
    except ValueError:
        return DEFAULT_HEADER_TIMEOUT_S


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that closes a connection whose request headers do not arrive within the header timeout."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """uvicorn's protocol plus the timer state."""
        super().__init__(*args, **kwargs)
        self._header_timeout_s = header_timeout_s()
        self._header_timer: asyncio.TimerHandle | None = None
        self._in_headers = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """A new connection has the header timeout to send its first request's headers."""
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        """Parse as uvicorn does; arm the timer when this read ended inside a request's headers."""
        super().data_received(data)
        if self._in_headers and self._header_timer is None:
            self._arm_header_timer()

    def on_message_begin(self) -> None:
        """A request starts: its headers are now being read."""
        super().on_message_begin()
        self._in_headers = True

    def on_headers_complete(self) -> None:
        """The headers are complete: no header deadline until the next request."""
        self._in_headers = False
        self._disarm_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the timer with the connection."""
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        """Start the header deadline (no-op when it is off)."""
        if self._header_timeout_s > 0:
            self._header_timer = self.loop.call_later(self._header_timeout_s, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        """Cancel the header deadline."""
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        """The headers did not arrive in time: close the connection."""
        self._header_timer = None
        if not self.transport.is_closing():
            self.logger.debug(
                "closing a connection whose request headers took longer than %g s", self._header_timeout_s
            )
            self.transport.close()
