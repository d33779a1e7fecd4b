#!/usr/bin/env bash
# Debian packages for the set-up scripts: apt-get install as root, or through `sudo -n`.
#   bash .ci/apt-install.sh TAG "WHAT FAILS WITHOUT THEM" PACKAGE...
# Without root or sudo it says what will fail and exits 3, which its callers take as "skip, exit 0": the
# set-up goes on and only the tests that need the packages fail. An apt failure exits with apt's status.
set -euo pipefail
tag=$1 fails=$2
shift 2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "[$tag] need root (or sudo) to apt-get install $1; $fails" >&2
    exit 3
  fi
fi
echo "[$tag] installing Debian's $*" >&2
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "$@"
