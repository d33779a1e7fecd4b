#!/usr/bin/env bash
# Debian's chromium for the viewer's browser test (tests/test_viewer_web.py). Playwright drives it
# through executable_path; Playwright's own browser download is never used (no internet on the floor).
# Idempotent: does nothing when /usr/bin/chromium is already there.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "[setup-browser] need root (or sudo) to apt-get install chromium; the browser test will be skipped" >&2
    exit 0
  fi
fi
echo "[setup-browser] installing Debian's chromium" >&2
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
/usr/bin/chromium --version >&2
