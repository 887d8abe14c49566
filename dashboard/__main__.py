"""`python -m dashboard [--port N]`: serve the dashboard with Voilà on 127.0.0.1 (replaces this process)."""

from __future__ import annotations

import argparse

from dashboard.serve import serve
from dashboard.settings import DEFAULT_PORT


def main(argv: list[str] | None = None) -> None:
    """Parse the port and hand the process over to Voilà."""
    parser = argparse.ArgumentParser(prog="python -m dashboard", description=__doc__)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")
    serve(parser.parse_args(argv).port)


if __name__ == "__main__":
    main()
