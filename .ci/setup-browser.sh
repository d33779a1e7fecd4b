#!/usr/bin/env bash
# Debian's chromium and xvfb for the viewer's tests (tests/test_viewer_web.py): Playwright drives
# chromium through executable_path (its own browser download is never used: no internet on the floor),
# and the GUI test runs under xvfb-run. Idempotent: does nothing when both are already there.
set -euo pipefail
if [ -x /usr/bin/chromium ] && command -v xvfb-run >/dev/null 2>&1; then
  exit 0
fi
bash "$(dirname "$0")/apt-install.sh" setup-browser "the browser tests will fail" chromium xvfb xauth || {
  status=$?; [ "$status" -eq 3 ] && exit 0; exit "$status"; }
/usr/bin/chromium --version >&2
