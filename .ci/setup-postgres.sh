#!/usr/bin/env bash
# Debian's PostgreSQL server binaries for the sweep tests (tests/test_sweep.py): each test starts its own
# server with initdb + pg_ctl in a fresh directory on loopback and stops it after (tests/pg_support.py);
# no cluster of the package's own is used. Idempotent: does nothing when initdb is already there.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "[setup-postgres] need root (or sudo) to apt-get install postgresql; the sweep tests will fail" >&2
    exit 0
  fi
fi
echo "[setup-postgres] installing Debian's postgresql" >&2
$SUDO apt-get update -q
# policy-rc.d-less containers may try to start the package's own cluster; the tests never use it.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q postgresql
ls /usr/lib/postgresql/*/bin/initdb >&2
