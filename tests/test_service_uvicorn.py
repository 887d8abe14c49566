"""The service as a real process: `python -m service` under uvicorn on 127.0.0.1, queried with httpx."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

from service.main import EXIT_BAD_CONFIG, EXIT_NO_CACHE
from service.processes import wait_until
from service.testing import TINY_N, build_tiny_cache, expected_audiences, tiny_interactions

from conftest import SERVER_DEADLINE_S, RunningServer

pytestmark = pytest.mark.server

# uvicorn shuts down gracefully on SIGTERM, then re-raises the signal so the exit status says "terminated".
CLEAN_EXIT = {0, -signal.SIGTERM}


def answers(check: Callable[[], bool]) -> Callable[[], bool]:
    """`check` as a polling predicate: an HTTP error (server not there yet, or restarting) counts as false."""

    def poll() -> bool:
        try:
            return check()
        except httpx.HTTPError:
            return False

    return poll


@pytest.fixture()
def server(cache_dir: Path, start_service: Callable[..., RunningServer]) -> RunningServer:
    """A single-worker server with polling off (reloads only on SIGHUP), ready to answer."""
    return start_service(cache_dir, RECSYS_RELOAD_INTERVAL_S="0")


def test_real_server_answers_like_the_cache(server: RunningServer) -> None:
    expected = expected_audiences(server.cache_dir)
    with httpx.Client(base_url=server.base, timeout=10) as http:
        health = http.get("/health").json()
        assert health["status"] == "ok" and health["cache"]["n"] == TINY_N
        for pid, triples in expected.items():
            body = http.get(f"/recommend/{pid}", params={"n": TINY_N}).json()
            assert [(r["customer_id"], r["score"], r["rank"]) for r in body["recommendations"]] == triples
        batch = http.post("/recommend/batch", json={"product_ids": list(expected), "n": 2})
        assert batch.status_code == 200 and batch.json()["count"] == len(expected)
        assert http.get("/products/sample", params={"n": 2, "seed": 3}).json()["count"] == 2
        bad = http.get("/recommend/not-a-number")
        assert bad.status_code == 422 and "integers" in bad.text
        malformed = http.post("/recommend/batch", content=b"{", headers={"content-type": "application/json"})
        assert malformed.status_code == 422 and "JSON decode error" in malformed.text
        assert http.get("/openapi.json").json()["info"]["title"]
    assert server.stop() in CLEAN_EXIT
    assert server.proc.stderr is not None and "Traceback" not in server.proc.stderr.read()


def test_sighup_reloads_a_new_cache_version(server: RunningServer) -> None:
    with httpx.Client(base_url=server.base, timeout=10) as http:
        old = http.get("/health").json()["cache"]["version"]
        new = build_tiny_cache(server.cache_dir, tiny_interactions(variant=1)).version
        assert http.get("/health").json()["cache"]["version"] == old  # polling is off: nothing changes by itself
        server.proc.send_signal(signal.SIGHUP)
        wait_until(
            answers(lambda: http.get("/health").json()["cache"]["version"] == new),
            "the SIGHUP reload",
            timeout_s=SERVER_DEADLINE_S,
            proc=server.proc,
        )
        assert http.get("/recommend/101").json()["model"] == new


def health_pids(base: str, tries: int = 40) -> set[int]:
    """Worker pids answering /health over `tries` fresh connections (each httpx.get opens its own)."""
    return {httpx.get(f"{base}/health", timeout=5).json()["pid"] for _ in range(tries)}


def test_two_workers_share_one_port_and_both_get_connections(
    cache_dir: Path, start_service: Callable[..., RunningServer]
) -> None:
    server = start_service(cache_dir, workers=2)
    proc, base = server.proc, server.base

    def wait(check: Callable[[], bool], what: str) -> None:
        wait_until(answers(check), what, timeout_s=SERVER_DEADLINE_S, proc=proc)

    wait(lambda: len(psutil.Process(proc.pid).children()) >= 2, "two worker processes")
    children = {c.pid for c in psutil.Process(proc.pid).children()}  # the workers (+ multiprocessing's tracker)
    # per-worker SO_REUSEPORT listeners: the kernel spreads new connections over both workers
    wait(lambda: len(health_pids(base)) == 2, "connections to reach both workers")
    workers = health_pids(base)
    assert len(workers) == 2 and workers <= children
    with httpx.Client(base_url=base, timeout=10) as http:
        assert all(http.get("/recommend/101").status_code == 200 for _ in range(20))
    # a killed worker is replaced; its listener goes with it and the replacement serves the port again
    victim = sorted(workers)[0]
    os.kill(victim, signal.SIGKILL)
    wait(lambda: victim not in health_pids(base, 10) and len(health_pids(base)) == 2, "the replacement worker to serve")
    assert server.stop() in CLEAN_EXIT


def test_missing_cache_exits_nonzero_with_a_clear_message(
    tmp_path: Path, start_service: Callable[..., RunningServer]
) -> None:
    proc = start_service(tmp_path / "nothing-here", ready=False).proc
    _, err = proc.communicate(timeout=SERVER_DEADLINE_S)
    assert proc.returncode == EXIT_NO_CACHE
    assert "manifest.json is missing" in err and "Traceback" not in err


def test_wildcard_cors_with_credentials_is_refused(
    cache_dir: Path, start_service: Callable[..., RunningServer]
) -> None:
    proc = start_service(cache_dir, ready=False, RECSYS_CORS_ORIGINS="*", RECSYS_CORS_ALLOW_CREDENTIALS="true").proc
    _, err = proc.communicate(timeout=SERVER_DEADLINE_S)
    assert proc.returncode == EXIT_BAD_CONFIG and "cannot be combined" in err


# ---------------------------------------------------------------------------------------------------
# deployable: keys, limits and timeouts on a real server (service.security, service.http)
# ---------------------------------------------------------------------------------------------------

KEY = "real-server-key-0123456789"


def raw_exchange(port: int, head: bytes, body_chunks: list[bytes], pause_s: float = 0.0) -> bytes:
    """Send a raw HTTP/1.1 request (head, then each body chunk) on a fresh connection; everything read back."""
    import socket
    import time

    with socket.create_connection(("127.0.0.1", port), timeout=SERVER_DEADLINE_S) as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):  # the server answered and stopped reading: expected
                break
            time.sleep(pause_s)
        out = b""
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            out += data
        return out


def test_keys_and_the_50_mb_limit_on_a_real_server(
    cache_dir: Path, start_service: Callable[..., RunningServer]
) -> None:
    server = start_service(cache_dir, RECSYS_API_KEYS=KEY, RECSYS_RELOAD_INTERVAL_S="0")
    with httpx.Client(base_url=server.base, timeout=10) as http:
        assert http.get("/health").status_code == 200
        assert http.get("/recommend/101").status_code == 401
        assert http.get("/recommend/101", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    auth = f"Authorization: Bearer {KEY}\r\n".encode()
    # 50 MB declared: answered 413 after the headers, without waiting for (or reading) the body
    head = b"POST /recommend/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth
    answer = raw_exchange(server.port, head + b"Content-Length: 52428800\r\nConnection: close\r\n\r\n", [b"{" * 1024])
    assert answer.startswith(b"HTTP/1.1 413 ") and b"larger than the limit of 2097152 bytes" in answer
    # chunked, no Content-Length: counted as it streams in, 413 once past the limit
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b" " * (1 << 20))
    chunked = head + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    answer = raw_exchange(server.port, chunked, [chunk] * 4 + [b"0\r\n\r\n"])
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert server.stop() in CLEAN_EXIT


def test_slow_bodies_and_slow_headers_are_cut_off(cache_dir: Path, start_service: Callable[..., RunningServer]) -> None:
    import time

    server = start_service(
        cache_dir, RECSYS_REQUEST_TIMEOUT_S="0.5", RECSYS_HEADER_TIMEOUT_S="0.5", RECSYS_RELOAD_INTERVAL_S="0"
    )
    head = b"POST /recommend/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"
    answer = raw_exchange(server.port, head, [b'{"product_ids": [101'], pause_s=2.0)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"did not arrive within 0.5 s" in answer
    t0 = time.monotonic()
    closed = raw_exchange(server.port, b"GET /recommend/101 HTTP/1.1\r\nHost: x\r\n", [])  # headers never finish
    assert closed == b"" and time.monotonic() - t0 < SERVER_DEADLINE_S / 2  # closed by the server, not by us
    with httpx.Client(base_url=server.base, timeout=10) as http:
        assert http.get("/recommend/101").status_code == 200
    assert server.stop() in CLEAN_EXIT


def test_0_0_0_0_without_keys_is_refused_before_binding(
    cache_dir: Path, start_service: Callable[..., RunningServer]
) -> None:
    proc = start_service(cache_dir, ready=False, RECSYS_HOST="0.0.0.0").proc
    _, err = proc.communicate(timeout=SERVER_DEADLINE_S)
    assert proc.returncode == EXIT_BAD_CONFIG
    assert "RECSYS_API_KEYS" in err and "RECSYS_ALLOW_ANONYMOUS" in err and "Traceback" not in err
