"""Benchmark what the service's security layer costs per request, in process: the key check and the Guard.

Run from the project root: ``.venv/bin/python benchmarks/bench_security.py`` (seconds; no cache needed). Writes
reports/benchmarks/security.json (``--out`` elsewhere).

What is measured (wall and thread-CPU time per call, median of ``--repeats`` rounds of ``--calls`` calls, on this
machine under whatever else runs: the load average is recorded):

- ``key_check_us``: ``KeyRing.match`` of a valid key (one SHA-256 of the presented key, then
  ``hmac.compare_digest`` against every accepted digest) for 1, 5 and 20 accepted keys;
- ``guard_us``: one ASGI request (a realistic header list) through ``service.security.Guard`` into an app that
  answers at once, against the same app without the Guard: the Guard's own cost with keys off, keys on (a valid
  key), and keys on with the rate limit (a bucket that never runs dry). The difference to ``bare`` is what the
  security layer adds to every request, e.g. the fast lane's ~tens of µs per GET /recommend.

The load test's keys-on phase (``python -m loadtest.run``) measures the same end to end, over sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from recsys import config
from service.security import Guard, KeyRing, Policy, hash_key

OUT_PATH = config.REPORTS_DIR / "benchmarks" / "security.json"
KEY = "bench-key-0123456789abcdefghijklmnop"
HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"user-agent", b"wrk"),
    (b"accept", b"*/*"),
    (b"authorization", f"Bearer {KEY}".encode()),
]


def per_call(fn: Callable[[], Any], calls: int, repeats: int) -> dict[str, float]:
    """Median wall and thread-CPU µs per call of `fn` over `repeats` rounds of `calls` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(calls):
            fn()
        walls.append((time.perf_counter() - w0) / calls * 1e6)
        cpus.append((time.thread_time() - c0) / calls * 1e6)
    return {"wall_us": round(statistics.median(walls), 3), "cpu_us": round(statistics.median(cpus), 3)}


def key_ring(size: int) -> KeyRing:
    """A ring of `size` accepted keys (hashed form), the benchmark key among them (last)."""
    spec = ",".join([hash_key(f"other-key-{i:04d}-padding-xx") for i in range(size - 1)] + [KEY])
    return KeyRing.from_settings(spec, None)


async def answer(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app that answers at once (what the fast lane costs is measured elsewhere)."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def asgi_calls(app: Callable[..., Awaitable[None]], calls: int) -> Callable[[], None]:
    """A function that runs `calls` requests through `app` in one event-loop run (loop cost amortised)."""
    scope = {"type": "http", "method": "GET", "path": "/recommend/1", "headers": HEADERS, "client": ("127.0.0.1", 1)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    async def many() -> None:
        for _ in range(calls):
            await app(dict(scope), receive, send)

    loop = asyncio.new_event_loop()
    return lambda: loop.run_until_complete(many())


def key_check(ring: KeyRing, calls: int, repeats: int) -> dict[str, float]:
    """Per-call µs of matching a valid key against `ring`."""
    presented = KEY.encode()
    return per_call(lambda: ring.match(presented), calls, repeats)


def guard_costs(calls: int, repeats: int) -> dict[str, dict[str, float]]:
    """Per-request µs through the Guard in each configuration, and without it."""
    keyed = Policy(keys=key_ring(1), max_body_bytes=2 * 1024 * 1024)
    setups: dict[str, Callable[..., Awaitable[None]]] = {
        "bare": answer,
        "keys_off": Guard(answer, Policy(max_body_bytes=2 * 1024 * 1024)),
        "keys_on": Guard(answer, keyed),
        "keys_on_rate_limited": Guard(answer, Policy(keys=key_ring(1), rate_per_s=1e9, burst=10**9)),
    }
    out = {}
    for name, app in setups.items():
        run = asgi_calls(app, calls)
        result = per_call(run, 1, repeats)
        out[name] = {k: round(v / calls, 3) for k, v in result.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    """Measure and write the JSON report."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20_000, help="calls per round (default 20000)")
    ap.add_argument("--repeats", type=int, default=7, help="rounds; the median is reported (default 7)")
    ap.add_argument("--out", type=Path, default=OUT_PATH, help=f"output JSON (default {config.relative(OUT_PATH)})")
    args = ap.parse_args(argv)
    report = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "loadavg": os.getloadavg()},
        "calls": args.calls,
        "repeats": args.repeats,
        "key_check_us": {f"{n}_keys": key_check(key_ring(n), args.calls, args.repeats) for n in (1, 5, 20)},
        "guard_us": guard_costs(args.calls, args.repeats),
    }
    bare = report["guard_us"]["bare"]["cpu_us"]
    report["guard_added_cpu_us"] = {k: round(v["cpu_us"] - bare, 3) for k, v in report["guard_us"].items()}
    out = config.resolve(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("key_check_us", "guard_added_cpu_us")}, indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
