"""Network address helpers shared by the service and the dashboard (standard library only)."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True when `host` is a loopback address (127.0.0.0/8, ::1) or the name localhost; False for anything else."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or "": it may reach beyond this machine
