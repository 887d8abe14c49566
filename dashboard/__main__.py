"""`python -m dashboard [--port N] [--host H]`: serve the dashboard with Voilà (127.0.0.1 by default; replaces this
process). Beyond loopback a token or password is required: see dashboard.serve."""

from __future__ import annotations

import argparse

from dashboard.serve import serve
from dashboard.settings import DEFAULT_PORT


def main(argv: list[str] | None = None) -> None:
    """Parse the port and host and hand the process over to Voilà."""
    parser = argparse.ArgumentParser(prog="python -m dashboard", description=__doc__)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--host",
        default=None,
        help="interface to bind (default RECSYS_DASHBOARD_HOST or 127.0.0.1); beyond loopback it needs "
        "RECSYS_DASHBOARD_TOKEN (or _TOKEN_FILE, _PASSWORD_HASH) or RECSYS_DASHBOARD_ALLOW_ANONYMOUS=true",
    )
    args = parser.parse_args(argv)
    serve(args.port, args.host)


if __name__ == "__main__":
    main()
