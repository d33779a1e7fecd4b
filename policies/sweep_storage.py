"""Where a sweep's study lives: a journal file on one machine, or a database many machines share.

    sweeps/NAME/journal.log          the default: Optuna's JournalFileBackend, no service to run
    postgresql://user:pw@host/db     Optuna's RDBStorage; workers on any node join the same study
    sqlite:///path.db                RDBStorage on one machine (no server, but little concurrency)

On a database, each running trial sends a heartbeat; a trial whose heartbeat stops (its worker was
killed, its node lost) is failed by the next worker that looks, and RetryFailedTrialCallback enqueues it
again with the same parameters (RetryHeartbeatStaleTrialCallback). The journal has no heartbeat: the local coordinator, which owns the
worker processes, fails and re-enqueues the trials of a worker that died (policies.sweep.fail_trials_of).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage

from policies.sweep_space import SweepError

DB_SCHEMES = ("postgresql", "postgresql+psycopg2", "postgresql+psycopg", "sqlite", "mysql", "mysql+pymysql")
MAX_RETRY = 3  # a trial that kills its worker three times is a bug, not bad luck
CONNECT_TIMEOUT_S = 10


def is_database(spec: str) -> bool:
    return "://" in spec


def redact(spec: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", spec)


def open_storage(spec: str, heartbeat_s: float = 30.0) -> optuna.storages.BaseStorage:
    """A journal file path or a database URL -> an Optuna storage; one-line SweepError when it cannot be."""
    if not is_database(spec):
        return _journal(Path(spec))
    check_database_url(spec)
    scheme = spec.split("://", 1)[0]
    engine_kwargs = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}} if scheme.startswith("postgresql") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental" since v2.8
        return _rdb(spec, heartbeat_s, engine_kwargs)


def check_database_url(spec: str) -> None:
    """A database URL's form, without connecting: called before a sweep makes its directory, so a typo leaves nothing."""
    import sqlalchemy.engine  # lazy: optuna's own dependency
    import sqlalchemy.exc

    scheme = spec.split("://", 1)[0]
    if scheme not in DB_SCHEMES:
        raise SweepError(f"--storage {redact(spec)}: unsupported scheme {scheme!r}; use postgresql://USER:PASSWORD@HOST:PORT/DB, "
                         "sqlite:///FILE.db, or a journal file path")
    try:
        url = sqlalchemy.engine.make_url(spec)
        url.port  # noqa: B018 (parsed lazily: 'host:notaport' fails here)
    except (sqlalchemy.exc.ArgumentError, ValueError) as exc:  # a port that is not a number, an unclosed [ (a traceback)
        raise SweepError(f"--storage {redact(spec)}: not a valid database URL ({_first_line(exc)})") from None
    if scheme.startswith("sqlite") and url.database in (None, "", ":memory:"):
        raise SweepError(f"--storage {redact(spec)}: an in-memory SQLite database cannot be shared with the worker processes; "
                         "give sqlite:///FILE.db")


def _rdb(spec: str, heartbeat_s: float, engine_kwargs: dict) -> RDBStorage:
    import sqlalchemy.exc  # lazy: optuna's own dependency, only needed to name its errors

    try:
        return RDBStorage(spec, engine_kwargs=engine_kwargs, heartbeat_interval=max(1, round(heartbeat_s)),
                          grace_period=max(2, round(2 * heartbeat_s)),
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))
    except sqlalchemy.exc.ArgumentError as exc:
        raise SweepError(f"--storage {redact(spec)}: not a valid database URL ({_first_line(exc)})") from None
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
        raise SweepError(f"--storage {redact(spec)}: cannot reach the database ({_first_line(getattr(exc, 'orig', exc))})") from None
    except ImportError as exc:
        raise SweepError(f"--storage {redact(spec)}: the database driver is not installed ({exc.__cause__ or exc})") from None


def _journal(path: Path) -> JournalStorage:
    if path.is_dir():
        raise SweepError(f"--storage {path}: is a directory; give the journal file (e.g. {path / 'journal.log'})")
    if not path.parent.is_dir():
        raise SweepError(f"--storage {path}: directory {path.parent} does not exist")
    return JournalStorage(JournalFileBackend(str(path)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
