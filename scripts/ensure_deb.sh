#!/usr/bin/env bash
# Make sure a Debian package's program is installed: ensure_deb.sh PROGRAM PACKAGE [PACKAGE ...]
# PROGRAM is a path (checked with -x) or a name (looked up on PATH). Idempotent: does nothing when it is
# there; otherwise apt-get installs the packages, with sudo only when not running as root.
#   scripts/ensure_deb.sh /usr/bin/chromium chromium fonts-dejavu-core   # browser test (Playwright executable_path)
#   scripts/ensure_deb.sh wrk wrk                                         # load test
#   scripts/ensure_deb.sh java default-jre-headless                       # Spark engine tests (Java 17+)
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 PROGRAM PACKAGE [PACKAGE ...]" >&2
    exit 2
fi
program="$1"
shift

present() {
    case "$program" in
        */*) [ -x "$program" ] ;;
        *) command -v "$program" >/dev/null 2>&1 ;;
    esac
}

if present; then
    echo "ensure_deb: $program already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "ensure_deb: not root and sudo is unavailable; install $* (apt-get install $*) as root" >&2
        exit 1
    fi
    SUDO="sudo"
fi

echo "ensure_deb: installing Debian package(s) $* for $program"
$SUDO apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
present
echo "ensure_deb: $program installed"
