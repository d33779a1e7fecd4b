"""A real PostgreSQL server for a test: Debian's binaries, its own data directory, loopback only.

PostgreSQL refuses to run as root, and CI runs as root: then the server (initdb, pg_ctl) runs as the
`postgres` user Debian's package creates, through runuser, in a fresh directory under /tmp that user
owns (pytest's tmp_path sits under a 0700 root directory it could not enter). CI installs the package
(.ci/setup-postgres.sh); where the binaries are missing the test fails and says so.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest


def pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): "
                    "run .ci/setup-postgres.sh (apt-get install -y postgresql)", pytrace=False)
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yield its URL (postgresql://genba@127.0.0.1:PORT/postgres); stop and remove it after."""
    bin_dir, port = pg_bin(), free_port()
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="genba-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = root / "data", root / "server.log"
    try:
        subprocess.run(as_user + [str(bin_dir / "initdb"), "-D", str(data), "-U", "genba", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True, timeout=60)
        subprocess.run(as_user + [str(bin_dir / "pg_ctl"), "start", "-w", "-t", "30", "-D", str(data), "-l", str(log),
                                  "-o", f"-k {root} -h 127.0.0.1 -p {port} -c fsync=off"],
                       check=True, capture_output=True, timeout=60)
        try:
            yield f"postgresql://genba@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(as_user + [str(bin_dir / "pg_ctl"), "stop", "-m", "immediate", "-w", "-D", str(data)],
                           capture_output=True, timeout=60)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"PostgreSQL did not start: {exc.stderr.decode(errors='replace').strip()} "
                    f"{log.read_text() if log.exists() else ''}", pytrace=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)
