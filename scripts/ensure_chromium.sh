#!/usr/bin/env bash
# Make sure Debian's chromium is installed for the browser tests (tests/test_dashboard_browser.py).
# Playwright drives /usr/bin/chromium through `executable_path`; it never downloads a browser of its own.
# Idempotent: does nothing when /usr/bin/chromium exists. Uses sudo only when not running as root.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    echo "ensure_chromium: /usr/bin/chromium already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "ensure_chromium: not root and sudo is unavailable; install chromium (apt-get install chromium) as root" >&2
        exit 1
    fi
    SUDO="sudo"
fi

echo "ensure_chromium: installing Debian chromium (+ a font with Arabic glyphs)"
$SUDO apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium fonts-dejavu-core
test -x /usr/bin/chromium
echo "ensure_chromium: installed"
