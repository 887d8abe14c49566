"""Dashboard access (dashboard.serve): loopback needs no token; beyond loopback a token or password, or an explicit
anonymous setting; a real Voilà started with a token refuses requests without it and renders with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from dashboard.serve import (
    ANONYMOUS_ENV,
    PASSWORD_HASH_ENV,
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    Access,
    DashboardConfigError,
    voila_command,
)
from recsys import config
from service.processes import free_port, port_open, stop_process_tree, wait_until

TOKEN = "dashboard-token-0123456789abcdef"
DEADLINE_S = 180.0  # Voilà starts a kernel and runs the notebook; generous for a loaded machine, never asserted


def test_loopback_needs_no_token_and_keeps_the_command_token_free() -> None:
    access = Access.from_env({})
    assert access.host == "127.0.0.1" and not access.protected
    cmd = voila_command(9000, access=access)
    assert "--Voila.ip=127.0.0.1" in cmd and "--token" not in cmd and "JUPYTER_TOKEN" not in access.env({})


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "dashboard.example"])
def test_beyond_loopback_refuses_to_start_open(host: str) -> None:
    with pytest.raises(DashboardConfigError) as info:
        Access.from_env({}, host=host)
    assert TOKEN_ENV in str(info.value) and ANONYMOUS_ENV in str(info.value)
    assert Access.from_env({ANONYMOUS_ENV: "true"}, host=host).allow_anonymous
    assert Access.from_env({TOKEN_ENV: TOKEN}, host=host).protected
    assert Access.from_env({PASSWORD_HASH_ENV: "argon2:$argon2id$v=19$m=10240,t=10,p=8$x$y"}, host=host).protected


def test_the_token_goes_through_the_environment_never_the_command_line(tmp_path: Path) -> None:
    access = Access.from_env({TOKEN_ENV: TOKEN}, host="0.0.0.0")
    cmd = voila_command(9000, access=access)
    assert "--token" in cmd and "--Voila.ip=0.0.0.0" in cmd and not any(TOKEN in part for part in cmd)
    assert access.env({"JUPYTER_TOKEN": "stale", "PATH": "/bin"}) == {"PATH": "/bin", "JUPYTER_TOKEN": TOKEN}
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    from_file = Access.from_env({TOKEN_FILE_ENV: str(token_file)}, host="0.0.0.0")
    assert from_file.env({})["JUPYTER_TOKEN_FILE"] == str(token_file) and "--token" in voila_command(
        1, access=from_file
    )
    hashed = Access.from_env({PASSWORD_HASH_ENV: "argon2:abc"}, host="0.0.0.0")
    assert "--PasswordIdentityProvider.hashed_password=argon2:abc" in voila_command(1, access=hashed)
    with pytest.raises(DashboardConfigError, match="at least 16"):
        Access.from_env({TOKEN_ENV: "short"})
    with pytest.raises(DashboardConfigError, match="not a readable file"):
        Access.from_env({TOKEN_FILE_ENV: str(tmp_path / "missing")})
    with pytest.raises(DashboardConfigError, match="true or false"):
        Access.from_env({ANONYMOUS_ENV: "maybe"})


def test_python_m_dashboard_refuses_0_0_0_0_without_a_token() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_DASHBOARD")}
    proc = subprocess.run(
        [sys.executable, "-m", "dashboard", "--host", "0.0.0.0", "--port", "1"],
        cwd=config.PROJ_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and TOKEN_ENV in proc.stderr and ANONYMOUS_ENV in proc.stderr


@pytest.mark.server
def test_a_real_voila_with_a_token_refuses_without_it_and_renders_with_it(tmp_path: Path) -> None:
    port = free_port()
    access = Access(host="127.0.0.1", port=port, token=TOKEN)
    empty = tmp_path / "nothing"  # no artifacts: the notebook renders its "run make run" messages
    base = {**os.environ, "RECSYS_DASHBOARD_DATA": str(empty), "RECSYS_DASHBOARD_REPORTS": str(empty)}
    log = tmp_path / "voila.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            voila_command(port, access=access),
            cwd=config.PROJ_ROOT,
            env={**access.env(base), "OPENBLAS_NUM_THREADS": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: port_open(port),
            "voila to listen",
            timeout_s=DEADLINE_S,
            proc=proc,
            describe_exit=lambda: log.read_text(errors="replace"),
        )
        url = f"http://127.0.0.1:{port}/"
        with httpx.Client(timeout=DEADLINE_S, follow_redirects=False) as http:
            anonymous = http.get(url)
            assert anonymous.status_code in (302, 403), anonymous.status_code
            if anonymous.status_code == 302:
                assert anonymous.headers["location"].startswith("/login")
            assert http.get(url, headers={"Authorization": "token wrong-token-000000000000"}).status_code in (302, 403)
            page = http.get(url, headers={"Authorization": f"token {TOKEN}"})
            assert page.status_code == 200 and "voila" in page.text.lower()
            assert "window.voila_finish()" in page.text  # the notebook ran to the end and was rendered
            assert "application/vnd.jupyter.widget-view+json" in page.text  # with its widgets
        assert TOKEN not in log.read_text(errors="replace"), "the token must not be logged"
    finally:
        stop_process_tree(proc)
