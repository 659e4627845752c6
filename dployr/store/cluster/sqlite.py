"""The cluster state in SQLite: ``cluster.db`` in the data dir, for one control plane.

Opened like the instance's own store (WAL, ``synchronous=NORMAL``, foreign keys on, private
file) and called from the trio thread: each call is one short transaction of a few small
statements. A write takes the write lock at once (``BEGIN IMMEDIATE``), so that a call either
does all it was asked or nothing.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

import trio

from dployr.store.base import BUSY_TIMEOUT_MS, configure
from dployr.store.cluster.base import ClusterStateBase
from dployr.store.cluster.notices import Changes
from dployr.store.cluster.schema import SQLITE_MIGRATIONS
from dployr.store.cluster.tables import Row, Tx
from dployr.store.errors import DiskFull, StoreError
from dployr.store.schema import migrate

T = TypeVar("T")

CLUSTER_DB_FILE_NAME = "cluster.db"
"""The SQLite cluster state's file name inside the data dir."""


class _SqliteTx:
    """A :class:`~dployr.store.cluster.tables.Tx` over an SQLite connection in a transaction."""

    share_lock = ""
    update_lock = ""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return list(self._db.execute(sql, tuple(params)).fetchall())

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        return self._db.execute(sql, tuple(params)).rowcount


class SqliteClusterState(ClusterStateBase):
    """The cluster state of one control plane, in an SQLite file. Open it with :meth:`open`."""

    def __init__(self, db: sqlite3.Connection, path: Path, clock: Callable[[], float]) -> None:
        """Wrap an open, migrated connection; use :meth:`open` instead."""
        super().__init__(clock)
        self._listeners: set[Changes] = set()
        # Invariant: self._db is None exactly when the state is closed.
        self._db: sqlite3.Connection | None = db
        self.path = path
        """The database file."""

    @classmethod
    def open(cls, path: Path, *, clock: Callable[[], float] = time.time) -> SqliteClusterState:
        """Open (creating and migrating if needed) the cluster state at ``path``.

        ``clock`` gives the wall-clock time join tokens are created and expire by.
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # SQLite gives the -wal and -shm files the database file's permissions.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        except OSError as error:
            raise StoreError(f"cannot create the database {path}: {error.strerror}") from None
        try:
            db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as error:
            raise StoreError(f"cannot open the database {path}: {error}") from None
        try:
            configure(db, path)
            migrate(db, path, SQLITE_MIGRATIONS)
        except sqlite3.Error as error:
            db.close()
            raise StoreError(f"cannot open the database {path}: {error}") from None
        except BaseException:
            db.close()
            raise
        return cls(db, path, clock)

    def __repr__(self) -> str:
        state = "closed" if self._db is None else "open"
        return f"<SqliteClusterState {str(self.path)!r} {state}>"

    async def lead(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Lead: the one control plane of an SQLite state always does. Runs until cancelled."""
        task_status.started()
        await trio.sleep_forever()

    @contextlib.asynccontextmanager
    async def notifications(self) -> AsyncIterator[Changes]:
        """What changed through this object (an SQLite state has one control plane)."""
        changes = Changes()
        self._listeners.add(changes)
        try:
            yield changes
        finally:
            self._listeners.discard(changes)

    async def aclose(self) -> None:
        """Close the database; closing twice is harmless."""
        await trio.lowlevel.checkpoint()
        if self._db is not None:
            db, self._db = self._db, None
            db.close()

    # -- internals -----------------------------------------------------------------------------

    async def _write(self, body: Callable[[Tx], T], *changed: str) -> T:
        await trio.lowlevel.checkpoint()
        with self._transaction("BEGIN IMMEDIATE") as tx:
            result = body(tx)
        for changes in self._listeners:  # committed: tell
            changes.publish(changed)
        return result

    async def _read(self, body: Callable[[Tx], T]) -> T:
        await trio.lowlevel.checkpoint()
        with self._transaction("BEGIN DEFERRED") as tx:
            return body(tx)

    @contextlib.contextmanager
    def _transaction(self, begin: str) -> Iterator[Tx]:
        """One transaction: committed if the block ends normally, else rolled back."""
        if self._db is None:
            raise StoreError(f"the cluster state {self.path} is closed")
        db = self._db
        try:
            db.execute(begin)
            try:
                yield _SqliteTx(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            if getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                raise DiskFull(
                    f"the database {self.path} could not be written: the disk is full"
                ) from error
            raise StoreError(f"the database {self.path} failed: {error}") from error
