"""Who may call the service and how much: API keys, the body-size limit, per-key rate limits, request timeouts.

One module, used by every path a request can take. ``Guard`` is a pure-ASGI middleware that sits outside the
fast lane (``service.fastlane``) and FastAPI's routing, so the hot ``GET /recommend/{id}`` answered by the lane
and every FastAPI route (including routes added later: ``/campaigns``, ``/audiences/by-name`` ...) pass the same
checks and get the same error bytes. Only ``PUBLIC_PATHS`` (``/health`` for probes, ``/`` and the offline API
docs with their assets) skip the key and the rate limit; everything else needs a key as soon as keys are set.

- **API keys** (``RECSYS_API_KEYS``, ``RECSYS_API_KEYS_FILE``): clients send ``Authorization: Bearer <key>``.
  Accepted keys are kept only as SHA-256 digests (a key may be configured as ``sha256:<hex>`` so the plain key
  never reaches the server's configuration); a request's key is hashed once and compared with
  ``hmac.compare_digest`` against every accepted digest (no early exit), so the time taken does not depend on
  how much of a key matched. Keys are never logged or echoed. A missing or wrong key gets 401 with
  ``WWW-Authenticate: Bearer`` (RFC 6750).
- **Body size** (``RECSYS_MAX_BODY_BYTES``): a declared ``Content-Length`` over the limit gets 413 before the
  app runs; a body without one (chunked) is counted as it streams in and reading stops at the limit (413). The
  hot GETs carry no body and pay nothing. (Starlette's own limiter answers in plain text and wraps every
  request's ``send``; this one keeps the JSON error shape and stays off the bodiless hot path.)
- **Rate limit** (``RECSYS_RATE_LIMIT_PER_S``, ``RECSYS_RATE_LIMIT_BURST``; off by default): a token bucket
  per key (per client address when keys are off), 429 with ``Retry-After``. Buckets live in each worker
  process: with W workers a client may get up to W times the rate (the kernel spreads connections over them).
- **Timeouts** (``RECSYS_REQUEST_TIMEOUT_S``): ``Deadline`` bounds a request's time inside FastAPI (the fast
  lane answers synchronously and is never cut): a body that does not arrive in time gets 408, a request that
  does not complete in time gets 503 with ``Retry-After``. uvicorn's keep-alive timeout and the header timeout
  of ``service.http`` bound idle and slow-header connections.

Every error is ``{"detail": ...}`` JSON with the same headers FastAPI's handlers send (``error_response``).
``python -m service.security new`` prints a fresh key and its ``sha256:`` form; ``hash`` hashes a key read
from standard input.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from fastapi import HTTPException

logger = logging.getLogger("recsys.service")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HASH_PREFIX = "sha256:"
MIN_KEY_LENGTH = 16
DOCS_PATHS = ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect", "/")
DOCS_PREFIX = "/docs/static/"
HEALTH_PATH = "/health"
REALM = 'Bearer realm="recsys"'
MAX_ANONYMOUS_BUCKETS = 4096


# ---------------------------------------------------------------------------------------------------
# keys
# ---------------------------------------------------------------------------------------------------


class KeyConfigError(ValueError):
    """An API-key setting cannot be used; the message names the setting and the fix (never the key)."""


def key_digest(key: str | bytes) -> bytes:
    """SHA-256 digest of a key's bytes (UTF-8 for text)."""
    return hashlib.sha256(key.encode("utf-8") if isinstance(key, str) else key).digest()


def hash_key(key: str) -> str:
    """The ``sha256:<hex>`` form of a key, to configure instead of the key itself."""
    return HASH_PREFIX + key_digest(key).hex()


def parse_key(entry: str, where: str) -> bytes:
    """One configured key (plain, or ``sha256:<64 hex>``) as the digest the service compares against."""
    text = entry.strip()
    if text.lower().startswith(HASH_PREFIX):
        hexpart = text[len(HASH_PREFIX) :]
        try:
            digest = bytes.fromhex(hexpart)
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise KeyConfigError(f"{where}: a hashed key must be sha256: followed by 64 hex digits")
        return digest
    if len(text) < MIN_KEY_LENGTH or any(ch.isspace() or ch == "," for ch in text) or not text.isprintable():
        raise KeyConfigError(
            f"{where}: keys must be at least {MIN_KEY_LENGTH} printable characters without spaces or commas; "
            "make one with `python -m service.security new`"
        )
    return key_digest(text)


def read_key_file(path: Path, where: str) -> list[str]:
    """The keys of a key file: one per line (plain or sha256:<hex>); blank lines and lines starting with # skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyConfigError(f"{where}: cannot read the key file {path}: {exc.strerror or exc}") from exc
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def key_entries(spec: str | None, file: Path | None) -> list[tuple[str, str]]:
    """(entry, where) for every configured key: RECSYS_API_KEYS items (``@path`` reads a file) and the key file."""
    entries: list[tuple[str, str]] = []
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("@"):
            path = Path(item[1:]).expanduser()
            entries += [(k, f"RECSYS_API_KEYS file {path}") for k in read_key_file(path, "RECSYS_API_KEYS")]
        else:
            entries.append((item, "RECSYS_API_KEYS"))
    if file is not None:
        entries += [(k, f"RECSYS_API_KEYS_FILE {file}") for k in read_key_file(file, "RECSYS_API_KEYS_FILE")]
    return entries


@dataclass(frozen=True)
class KeyRing:
    """The SHA-256 digests of the accepted keys; empty = no authentication."""

    digests: tuple[bytes, ...] = ()

    @classmethod
    def from_settings(cls, spec: str | None, file: Path | None) -> KeyRing:
        """Parse RECSYS_API_KEYS (and the key file); KeyConfigError names the bad setting, never the key."""
        digests = [parse_key(entry, where) for entry, where in key_entries(spec, file)]
        if (spec or file) and not digests:
            raise KeyConfigError("RECSYS_API_KEYS / RECSYS_API_KEYS_FILE is set but holds no key")
        return cls(tuple(dict.fromkeys(digests)))

    @property
    def enabled(self) -> bool:
        """True when requests must carry a key."""
        return bool(self.digests)

    def match(self, presented: bytes) -> int | None:
        """Index of the accepted key equal to `presented`, or None; compares the digest against every key."""
        digest = key_digest(presented)
        found: int | None = None
        for i, accepted in enumerate(self.digests):
            if hmac.compare_digest(digest, accepted):
                found = i
        return found


def bearer_token(value: bytes | None) -> bytes | None:
    """The credentials of an ``Authorization: Bearer <token>`` header (scheme case-insensitive), else None."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    token = token.strip()
    return token or None


# ---------------------------------------------------------------------------------------------------
# rate limits
# ---------------------------------------------------------------------------------------------------


@dataclass
class TokenBucket:
    """Per-identity token buckets: `rate` tokens per second, at most `burst` saved; one request costs one token."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    buckets: dict[Any, tuple[float, float]] = field(default_factory=dict)  # identity -> (tokens, updated at)

    def take(self, identity: Any) -> float:
        """0.0 when `identity` may proceed (a token is spent), else the seconds until its next token."""
        now = self.clock()
        tokens, then = self.buckets.get(identity, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens >= 1.0:
            self.buckets[identity] = (tokens - 1.0, now)
            return 0.0
        self.buckets[identity] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def forget_idle(self) -> None:
        """Drop buckets that are full again (their identities are back to the initial state)."""
        now = self.clock()
        full = [k for k, (tokens, then) in self.buckets.items() if tokens + (now - then) * self.rate >= self.burst]
        for key in full:
            del self.buckets[key]


# ---------------------------------------------------------------------------------------------------
# responses
# ---------------------------------------------------------------------------------------------------


def error_response(status: int, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> tuple[Message, Message]:
    """The ASGI messages of a ``{"detail": ...}`` JSON error: the headers FastAPI's handlers send, then `headers`."""
    body = orjson.dumps({"detail": detail})
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-length", str(len(body)).encode("latin-1")),
            (b"content-type", b"application/json"),
            *headers,
        ],
    }
    return start, {"type": "http.response.body", "body": body}


async def send_error(send: Send, status: int, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Send one JSON error response."""
    start, body = error_response(status, detail, headers)
    await send(start)
    await send(body)


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit (FastAPI renders it like any HTTPException)."""

    def __init__(self, limit: int) -> None:
        """A 413 naming the limit."""
        super().__init__(status_code=413, detail=body_limit_detail(limit))


def body_limit_detail(limit: int) -> str:
    """The 413 message."""
    return f"the request body is larger than the limit of {limit} bytes"


MISSING_KEY = "an API key is required: send it as Authorization: Bearer <key>"
WRONG_KEY = "the API key is not valid"


# ---------------------------------------------------------------------------------------------------
# the middleware
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """What `Guard` enforces (built from ServiceSettings by `Policy.from_settings`)."""

    keys: KeyRing = KeyRing()
    max_body_bytes: int | None = None
    rate_per_s: float = 0.0
    burst: int = 1
    public_docs: bool = True

    @classmethod
    def from_settings(cls, settings: Any) -> Policy:
        """The policy of a ServiceSettings object."""
        key_spec = settings.api_keys.get_secret_value() if settings.api_keys is not None else None
        return cls(
            keys=KeyRing.from_settings(key_spec, settings.api_keys_file),
            max_body_bytes=settings.max_body_bytes,
            rate_per_s=settings.rate_limit_per_s,
            burst=settings.rate_limit_burst,
            public_docs=settings.public_docs,
        )

    def is_public(self, path: str) -> bool:
        """True for paths that need no key and are not rate limited: /health, and the docs when they are public."""
        if path == HEALTH_PATH:
            return True
        return self.public_docs and (path in DOCS_PATHS or path.startswith(DOCS_PREFIX))


class Guard:
    """Pure-ASGI middleware: body-size limit, API key and rate limit, in that order, before anything else runs."""

    def __init__(self, app: ASGIApp, policy: Policy) -> None:
        """Wrap `app` (the fast lane, then FastAPI) with `policy`."""
        self.app = app
        self.policy = policy
        self.limiter = TokenBucket(policy.rate_per_s, policy.burst) if policy.rate_per_s > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check one HTTP request; other ASGI events pass through."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self.policy
        authorization: bytes | None = None
        length: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
        limit = policy.max_body_bytes
        if limit is not None and length is not None and length.isdigit() and int(length) > limit:
            await send_error(send, 413, body_limit_detail(limit))
            return
        public = policy.is_public(scope["path"])
        identity: Any = None
        if policy.keys.enabled and not public:
            token = bearer_token(authorization)
            identity = None if token is None else policy.keys.match(token)
            if identity is None:
                missing = token is None
                challenge = REALM if missing else REALM + ', error="invalid_token"'
                await send_error(
                    send, 401, MISSING_KEY if missing else WRONG_KEY, [(b"www-authenticate", challenge.encode())]
                )
                return
        if self.limiter is not None and not public:
            wait = self.limiter.take(identity if identity is not None else client_host(scope))
            if wait > 0:
                await self._too_many(send, wait)
                return
        if limit is None or not (chunked or (length is not None and length != b"0")):
            await self.app(scope, receive, send)
            return
        await self._with_body_limit(scope, receive, send, limit)

    async def _too_many(self, send: Send, wait: float) -> None:
        """429 with Retry-After (whole seconds, at least 1)."""
        policy = self.policy
        if self.limiter is not None and len(self.limiter.buckets) > MAX_ANONYMOUS_BUCKETS:
            self.limiter.forget_idle()
        retry = max(1, math.ceil(wait))
        detail = (
            f"rate limit exceeded: at most {policy.rate_per_s:g} requests per second (bursts of {policy.burst}); "
            f"retry after {retry} s"
        )
        await send_error(send, 429, detail, [(b"retry-after", str(retry).encode())])

    async def _with_body_limit(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Run the app with a `receive` that counts body bytes and raises BodyTooLarge past `limit`."""
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if started:
                raise
            await send_error(send, 413, body_limit_detail(limit))


def client_host(scope: Scope) -> str:
    """The client's address (the rate-limit identity when keys are off)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class Deadline:
    """Pure-ASGI middleware: a request must complete within `timeout_s` (408 for a slow body, 503 otherwise)."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        """Wrap `app`; `timeout_s` <= 0 disables the deadline."""
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run one request under the deadline."""
        if scope["type"] != "http" or self.timeout_s <= 0:
            await self.app(scope, receive, send)
            return
        started = False
        cut_while_reading = False

        async def timed_receive() -> Message:
            nonlocal cut_while_reading
            try:
                return await receive()
            except asyncio.CancelledError:  # the deadline fired while the body was still arriving
                cut_while_reading = True
                raise

        async def timed_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            async with asyncio.timeout(self.timeout_s) as deadline:
                await self.app(scope, timed_receive, timed_send)
        except TimeoutError:
            if not deadline.expired():
                raise
            logger.warning("request %s %s passed its %g s deadline", scope["method"], scope["path"], self.timeout_s)
            if started:
                return  # too late to answer: the connection ends with an incomplete response
            if cut_while_reading:
                await send_error(send, 408, f"the request body did not arrive within {self.timeout_s:g} s")
            else:
                detail = f"the request did not complete within {self.timeout_s:g} s; try again"
                await send_error(send, 503, detail, [(b"retry-after", b"1")])


# ---------------------------------------------------------------------------------------------------
# `python -m service.security new | hash`
# ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``new``: print a random key and its sha256 form; ``hash``: hash the key read from standard input."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["new"]:
        key = secrets.token_urlsafe(32)
        print(f"key (give it to the client):           {key}")
        print(f"RECSYS_API_KEYS entry (for the server): {hash_key(key)}")
        return 0
    if args == ["hash"]:
        key = sys.stdin.readline().strip()
        parse_key(key, "the key read from standard input")
        print(hash_key(key))
        return 0
    print("usage: python -m service.security new | hash   (hash reads the key from standard input)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
