#!/usr/bin/env bash
# Debian's PostgreSQL server binaries for the sweep tests (tests/test_sweep.py): each test starts its own
# server with initdb + pg_ctl in a fresh directory on loopback and stops it after (tests/pg_support.py);
# no cluster of the package's own is used. Idempotent: does nothing when initdb is already there.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
# policy-rc.d-less containers may try to start the package's own cluster; the tests never use it.
bash "$(dirname "$0")/apt-install.sh" setup-postgres "the sweep tests will fail" postgresql || {
  status=$?; [ "$status" -eq 3 ] && exit 0; exit "$status"; }
ls /usr/lib/postgresql/*/bin/initdb >&2
