"""Serve the dashboard notebook with Voilà (`python -m dashboard`, `recsys dashboard`): loopback by default.

Access (the Jupyter server auth that Voilà 0.5 uses: ``jupyter_server``'s ``PasswordIdentityProvider``):

- On the loopback interface (the default, 127.0.0.1) the dashboard needs no token: it is for the person at
  this machine, as before.
- Bound beyond loopback (``--host`` / ``RECSYS_DASHBOARD_HOST``) it serves customer lists to anyone who
  reaches the port, so it refuses to start unless a token or a password is set, or
  ``RECSYS_DASHBOARD_ALLOW_ANONYMOUS=true`` says explicitly that it may run open (e.g. behind a proxy that
  authenticates).
- ``RECSYS_DASHBOARD_TOKEN`` (or ``RECSYS_DASHBOARD_TOKEN_FILE``, a file holding it): Voilà runs with
  ``--token`` and reads the token from ``JUPYTER_TOKEN`` / ``JUPYTER_TOKEN_FILE`` in its environment, never from
  its command line (which other users of the machine can read). Open ``http://HOST:PORT/?token=<token>`` once
  (the browser then keeps a cookie), log in at ``/login``, or send ``Authorization: token <token>``.
- ``RECSYS_DASHBOARD_PASSWORD_HASH``: a hashed password (``python -c "from jupyter_server.auth import passwd;
  print(passwd())"``), asked for on ``/login``.

Without a token or password the request gets a redirect to ``/login`` (pages) or 403 (APIs, websockets).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from dashboard.settings import DEFAULT_PORT, NOTEBOOK
from recsys.config import resolve
from recsys.net import is_loopback

HOST_ENV = "RECSYS_DASHBOARD_HOST"
# names of environment variables, not secrets:
TOKEN_ENV = "RECSYS_DASHBOARD_TOKEN"  # nosec B105 # a variable's name
TOKEN_FILE_ENV = "RECSYS_DASHBOARD_TOKEN_FILE"  # nosec B105 # a variable's name
PASSWORD_HASH_ENV = "RECSYS_DASHBOARD_PASSWORD_HASH"  # nosec B105 # a variable's name
ANONYMOUS_ENV = "RECSYS_DASHBOARD_ALLOW_ANONYMOUS"
DEFAULT_HOST = "127.0.0.1"
MIN_TOKEN_LENGTH = 16


class DashboardConfigError(ValueError):
    """The dashboard's access settings cannot be used; the message names the settings to change."""


@dataclass(frozen=True)
class Access:
    """Where the dashboard listens and who may open it."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    token_file: Path | None = None
    password_hash: str | None = None
    allow_anonymous: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, host: str | None = None, port: int | None = None) -> Access:
        """Access settings from RECSYS_DASHBOARD_* variables (`host`/`port` from the command line win); checked."""
        env = os.environ if env is None else env
        flag = env.get(ANONYMOUS_ENV, "").strip().lower()
        if flag not in {"", "true", "false", "1", "0", "yes", "no"}:
            raise DashboardConfigError(f"{ANONYMOUS_ENV} must be true or false, got {flag!r}")
        access = cls(
            host=host or env.get(HOST_ENV) or DEFAULT_HOST,
            port=int(port if port is not None else DEFAULT_PORT),
            token=env.get(TOKEN_ENV) or None,
            token_file=resolve(env[TOKEN_FILE_ENV]) if env.get(TOKEN_FILE_ENV) else None,
            password_hash=env.get(PASSWORD_HASH_ENV) or None,
            allow_anonymous=flag in {"true", "1", "yes"},
        )
        access.check()
        return access

    @property
    def protected(self) -> bool:
        """True when a token or a password is required."""
        return bool(self.token or self.token_file or self.password_hash)

    def check(self) -> None:
        """Refuse an open dashboard beyond loopback, a short token, or an unreadable token file."""
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise DashboardConfigError(
                f"{TOKEN_ENV} must be at least {MIN_TOKEN_LENGTH} characters "
                "(make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        if self.token_file is not None and not self.token_file.is_file():
            raise DashboardConfigError(f"{TOKEN_FILE_ENV} names {self.token_file}, which is not a readable file")
        if not self.protected and not self.allow_anonymous and not is_loopback(self.host):
            raise DashboardConfigError(
                f"refusing to serve the dashboard on {self.host!r} (beyond the loopback interface) without a token "
                f"or password: set {TOKEN_ENV} (or {TOKEN_FILE_ENV}, or {PASSWORD_HASH_ENV}), or set "
                f"{ANONYMOUS_ENV}=true to serve it open on purpose"
            )

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """Voilà's environment: `base` plus the token where jupyter_server reads it (JUPYTER_TOKEN[_FILE])."""
        env = {k: v for k, v in base.items() if k not in {"JUPYTER_TOKEN", "JUPYTER_TOKEN_FILE"}}
        if self.token:
            env["JUPYTER_TOKEN"] = self.token
        elif self.token_file is not None:
            env["JUPYTER_TOKEN_FILE"] = str(self.token_file)
        return env


def voila_command(
    port: int = DEFAULT_PORT, notebook: Path | None = None, cull_idle_s: int = 600, access: Access | None = None
) -> list[str]:
    """The argv that serves the dashboard with Voilà on `access.host` (127.0.0.1 by default) and `port`.

    No browser; kernels of closed tabs culled. With a token, ``--token`` makes Voilà require one (read from its
    environment, see `Access.env`); with a password hash, jupyter_server's login form asks for the password.
    """
    access = access or Access(port=port)
    cmd = [
        sys.executable,
        "-m",
        "voila",
        str(notebook or NOTEBOOK),
        "--no-browser",
        f"--Voila.ip={access.host}",
        f"--port={int(port)}",
        "--MappingKernelManager.cull_interval=60",
        f"--MappingKernelManager.cull_idle_timeout={int(cull_idle_s)}",
        "--preheat_kernel=True",  # a kernel that already ran the notebook waits for the next visitor
        "--pool_size=1",
        "--VoilaKernelManager.fill_delay=3",  # refill the pool once the visitor's page has rendered, not during it
    ]
    if access.token or access.token_file:
        cmd.append("--token")
    if access.password_hash:
        cmd.append(f"--PasswordIdentityProvider.hashed_password={access.password_hash}")
    return cmd


def serve(port: int = DEFAULT_PORT, host: str | None = None) -> NoReturn:
    """Replace this process with Voilà serving the dashboard; signals then reach Voilà directly."""
    try:
        access = Access.from_env(host=host, port=port)
    except DashboardConfigError as exc:
        print(f"dashboard: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    shown = f"[{access.host}]" if ":" in access.host else access.host
    how = "token or password required" if access.protected else "no token (loopback or explicitly anonymous)"
    print(f"dashboard: http://{shown}:{int(port)}/ ({how}; Ctrl-C stops it)", file=sys.stderr, flush=True)
    cmd = voila_command(port, access=access)
    os.execve(cmd[0], cmd, access.env(os.environ))  # nosec B606 # replaces this process with Voilà (sys.executable -m voila), argv built here
