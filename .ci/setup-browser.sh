#!/usr/bin/env bash
# Debian's chromium and xvfb for the viewer's tests (tests/test_viewer_web.py): Playwright drives
# chromium through executable_path (its own browser download is never used: no internet on the floor),
# and the GUI test runs under xvfb-run. Idempotent: does nothing when both are already there.
set -euo pipefail
if [ -x /usr/bin/chromium ] && command -v xvfb-run >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "[setup-browser] need root (or sudo) to apt-get install chromium; the browser tests will fail" >&2
    exit 0
  fi
fi
echo "[setup-browser] installing Debian's chromium and xvfb" >&2
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium xvfb xauth
/usr/bin/chromium --version >&2
