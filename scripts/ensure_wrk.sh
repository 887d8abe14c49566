#!/usr/bin/env bash
# Make sure Debian's wrk is installed for the load-test smoke test (tests/test_loadtest.py) and loadtest/run.py.
# Idempotent: does nothing when wrk is on PATH. Uses sudo only when not running as root.
set -euo pipefail

if command -v wrk >/dev/null 2>&1; then
    echo "ensure_wrk: $(command -v wrk) already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "ensure_wrk: not root and sudo is unavailable; install wrk (apt-get install wrk) as root" >&2
        exit 1
    fi
    SUDO="sudo"
fi

echo "ensure_wrk: installing Debian wrk"
$SUDO apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wrk
command -v wrk >/dev/null
echo "ensure_wrk: installed"
