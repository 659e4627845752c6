"""The embedded SQLite store: desired state, settings, environment, deployments, metrics,
API tokens, dashboard logouts and the audit log.

One database file, ``<data dir>/dployr.db``, opened by one daemon. It is in WAL mode with
``synchronous=NORMAL``: every method that writes does so in exactly one transaction
(``BEGIN IMMEDIATE`` … ``COMMIT``), so a daemon killed with ``kill -9`` at any moment leaves
each record either as it was before the call or as it is after it, never half-written. (A
power cut may lose the last few commits, never consistency.) ``secure_delete`` is on, so a
deleted or overwritten value does not linger in the database's free pages (an older copy of a
page can stay in the write-ahead log until the next checkpoint).

The API is synchronous on purpose: the daemon calls it from its trio thread and each call
is a few small statements. The connection refuses to be used from another thread.

The :class:`Store` is made of one class per group of tables (:mod:`~dployr.store.services`,
:mod:`~dployr.store.deployments`, :mod:`~dployr.store.history`, :mod:`~dployr.store.access`,
:mod:`~dployr.store.keys`, :mod:`~dployr.store.jobs`) over
:class:`~dployr.store.base.StoreBase`, which holds the connection and its transactions.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from dployr.store.access import AccessTables
from dployr.store.base import BUSY_TIMEOUT_MS, configure
from dployr.store.deployments import DeploymentTables
from dployr.store.errors import (
    StoreError,
)
from dployr.store.history import MetricTables
from dployr.store.jobs import JobTables
from dployr.store.keys import KeyRing
from dployr.store.reserve import DiskReserve
from dployr.store.schema import migrate
from dployr.store.secrets import Cipher
from dployr.store.services import ServiceTables


class Store(ServiceTables, DeploymentTables, MetricTables, AccessTables, KeyRing, JobTables):
    """The daemon's embedded database. Open it with :meth:`Store.open`.

    Use it as a context manager, or call :meth:`close`. Every method either does all it was
    asked or, raising a :class:`~dployr.errors.DployrError`, nothing at all.
    """

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        cipher: Cipher | None = None,
        clock: Callable[[], float] = time.time,
        reserve: DiskReserve | None = None,
    ) -> Store:
        """Open (creating and migrating if needed) the database at ``path``.

        ``cipher`` seals secret environment variables; by default it is
        ``Cipher.from_environment(path.parent)``: ``$DPLOYR_MASTER_KEY``, else the key file
        ``master.key`` beside the database, created on first use. If the database already
        holds secrets, the key is checked against one of them now, so that a wrong key is
        reported when the daemon starts rather than when a service does.

        ``clock`` gives the wall-clock time recorded in ``created_at`` and the like.

        ``reserve``, space held back on the database's disk, is released before a write
        that might not find room (and when one did not): the daemon passes one, so that
        its records can still be written when its services' logs have filled the disk.
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # SQLite gives the -wal and -shm files the database file's permissions, so
            # creating it private keeps all three private.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        except OSError as error:
            raise StoreError(f"cannot create the database {path}: {error.strerror}") from None
        if cipher is None:
            cipher = Cipher.from_environment(path.parent)
        try:
            db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as error:
            raise StoreError(f"cannot open the database {path}: {error}") from None
        try:
            configure(db, path)
            migrate(db, path)
            store = cls(db, path, cipher, clock, reserve)
            store._settle_rotation()
            store._check_master_key()
        except sqlite3.Error as error:
            db.close()
            raise StoreError(f"cannot open the database {path}: {error}") from None
        except BaseException:
            db.close()
            raise
        return store
