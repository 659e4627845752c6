"""What every part of the store shares: the connection and its transactions, the row
helpers, and the constants of the tables.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from dployr import serde
from dployr.models import (
    Deployment,
    DeploymentStatus,
    DesiredState,
    InvalidSetting,
    ServiceSettings,
    check_env_key,
    check_env_value,
)
from dployr.store.errors import (
    DiskFull,
    StoreError,
    UnknownDeployment,
    UnknownService,
    WrongMasterKey,
)
from dployr.store.records import ServiceRecord
from dployr.store.reserve import DiskReserve
from dployr.store.secrets import KEY_ENV, KEY_FILE_NAME, Cipher

DB_FILE_NAME = "dployr.db"
"""The database's file name inside the data dir."""
SECRET_MASK = "••••••"
"""What :meth:`Store.env_listing` shows instead of a secret's value."""
TOKEN_PREFIX = "dployr_"
"""How every API token starts, so that one pasted in the wrong place is recognisable."""
BUSY_TIMEOUT_MS = 5_000
"""How long a statement waits for a lock held by another connection before failing."""
ROTATION_KEY = "sealed_under"
"""The meta key naming (by a digest) the key a master-key rotation sealed everything under."""
INSTANCE_ID_KEY = "instance_id"
"""The meta key under which :meth:`Store.instance_id` keeps this instance's id."""

AUDIT_KEPT = 100_000
"""The audit log keeps this many of the newest records."""

TOKEN_BYTES = 32
MAX_TOKEN_NAME = 100
MAX_TOKEN_LIFETIME = 10 * 365 * 86400.0
LAST_USED_STEP = 60.0
"""A token's ``last_used_at`` is written at most this often (seconds)."""
SERVICE_SELECT = (
    "SELECT s.*, d.number AS active_number FROM services s"
    " LEFT JOIN deployments d ON d.id = s.active_deployment"
)
"""A service's row with its active deployment's number (the column holds its row id)."""
UNFINISHED = tuple(status.value for status in DeploymentStatus if not status.finished)


class Unset:
    """The type of :data:`UNSET`."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset()
"""The default of :meth:`Store.update_deployment`'s fields: leave the field as it is."""


KEY_ADVICE = (
    f"Set {KEY_ENV}, or restore the {KEY_FILE_NAME} file of the data dir, "
    "to the key the secrets were set with"
)


def service_record(row: sqlite3.Row) -> ServiceRecord:
    return ServiceRecord(
        name=row["name"],
        settings=serde.loads(row["settings"], ServiceSettings),
        desired=DesiredState(row["desired"]),
        active_deployment=row["active_number"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def deployment_from_row(row: sqlite3.Row) -> Deployment:
    release = row["release"]
    return Deployment(
        id=row["number"],
        service=row["service"],
        status=DeploymentStatus(row["status"]),
        settings=serde.loads(row["settings"], ServiceSettings),
        created_at=row["created_at"],
        revision=row["revision"],
        finished_at=row["finished_at"],
        exit_code=row["exit_code"],
        error=row["error"],
        output_tail=tuple(json.loads(row["output_tail"])),
        rollback_of=row["rollback_of"],
        release=None if release == row["number"] else release,
        image=row["image"],
    )


def env_context(name: str, key: str) -> bytes:
    """The associated data binding a secret to its service and key (neither holds NUL)."""
    return b"dployr env\x00" + name.encode() + b"\x00" + key.encode()


def git_context(name: str, remote: str) -> bytes:
    """The associated data binding a git password to its service and remote."""
    return b"dployr git\x00" + name.encode() + b"\x00" + remote.encode()


def check_utf8(key: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidSetting(f"the value of {key} is not valid Unicode text") from None


class StoreBase:
    """The connection, its transactions and the row helpers every group of tables uses.

    :class:`~dployr.store.store.Store` is made of one class per group of tables, each a
    subclass of this one; every public method is one transaction.
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        path: Path,
        cipher: Cipher,
        clock: Callable[[], float],
        reserve: DiskReserve | None = None,
    ) -> None:
        """Wrap an open, migrated connection; use :meth:`Store.open` instead."""
        # Invariant: self._db is None exactly when the store is closed.
        self._db: sqlite3.Connection | None = db
        self._cipher = cipher
        self._clock = clock
        self.path = path
        """The database file."""
        self.reserve = reserve
        """The disk reserve kept for the database's writes, if any (see ``reserve.py``)."""

    # -- opening and closing ---------------------------------------------------------------

    def close(self) -> None:
        """Close the database; closing twice is harmless. The store is unusable afterwards."""
        if self._db is not None:
            db, self._db = self._db, None
            db.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._db is None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._db is None else "open"
        return f"<Store {str(self.path)!r} {state}>"

    # -- meta ------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """The value stored under ``key`` in the small key/value table, or None."""
        with self._read() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def set_meta(self, key: str, value: str) -> None:
        """Store ``value`` under ``key`` in the small key/value table."""
        if not isinstance(key, str) or not key:
            raise ValueError("a meta key must be non-empty text")
        if not isinstance(value, str):
            raise TypeError(f"a meta value must be text, not {value!r}")
        with self._write() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def instance_id(self) -> str:
        """This instance's id: a random UUID chosen the first time it is asked for."""
        with self._write() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                (INSTANCE_ID_KEY, str(uuid.uuid4())),
            )
            row = db.execute("SELECT value FROM meta WHERE key = ?", (INSTANCE_ID_KEY,)).fetchone()
        return str(row["value"])

    # -- internals -------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"the store {self.path} is closed")
        return self._db

    @contextlib.contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        """One transaction: committed if the block ends normally, else rolled back."""
        db = self._connection()
        if db.in_transaction:
            raise RuntimeError("store transactions do not nest")
        try:
            db.execute(begin)
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            try:
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            if getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                if self.reserve is not None:
                    self.reserve.full_seen()  # the next write finds the reserve's room
                raise DiskFull(
                    f"the database {self.path} could not be written: the disk is full"
                ) from error
            raise StoreError(f"the database {self.path} failed: {error}") from error

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        if self.reserve is not None:
            self.reserve.before_write()
        # IMMEDIATE takes the write lock at once, so a transaction never fails half-way to
        # upgrade its lock.
        return self._transaction("BEGIN IMMEDIATE")

    def _read(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        # A read transaction: one consistent snapshot for the few statements of a call.
        return self._transaction("BEGIN DEFERRED")

    @staticmethod
    def _service_row(db: sqlite3.Connection, name: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = db.execute(
            f"{SERVICE_SELECT} WHERE s.name = ?", (name,)
        ).fetchone()
        return row

    def _require_service(self, db: sqlite3.Connection, name: str) -> sqlite3.Row:
        row = self._service_row(db, name)
        if row is None:
            raise UnknownService(f"no service named {name!r}")
        return row

    def _update_service(self, name: str, **columns: object) -> ServiceRecord:
        with self._write() as db:
            return self._update_service_in(db, name, **columns)

    def _update_service_in(
        self, db: sqlite3.Connection, name: str, **columns: object
    ) -> ServiceRecord:
        """Set some columns of a service's row (names from this module only) and touch it."""
        self._require_service(db, name)
        assignments = ", ".join(f"{column} = ?" for column in columns)
        db.execute(
            f"UPDATE services SET {assignments}, updated_at = ? WHERE name = ?",
            (*columns.values(), self._clock(), name),
        )
        return service_record(self._require_service(db, name))

    def _touch(self, db: sqlite3.Connection, name: str) -> None:
        db.execute("UPDATE services SET updated_at = ? WHERE name = ?", (self._clock(), name))

    @staticmethod
    def _deployment_in(db: sqlite3.Connection, name: str, number: int) -> Deployment | None:
        row = db.execute(
            "SELECT * FROM deployments WHERE service = ? AND number = ?", (name, number)
        ).fetchone()
        return None if row is None else deployment_from_row(row)

    @staticmethod
    def _deployment_key(db: sqlite3.Connection, name: str, number: int) -> int:
        """The row id of a deployment (what other tables refer to), or UnknownDeployment."""
        row = db.execute(
            "SELECT id FROM deployments WHERE service = ? AND number = ?", (name, number)
        ).fetchone()
        if row is None:
            raise UnknownDeployment(f"service {name!r} has no deployment {number}")
        return int(row["id"])

    def _unseal(self, name: str, key: str, sealed: bytes) -> str:
        try:
            return self._cipher.decrypt(sealed, env_context(name, key))
        except WrongMasterKey:
            raise WrongMasterKey(
                f"cannot decrypt the secret {key} of service {name!r} with the master key "
                f"from {self._cipher.source}: it was encrypted with another key, or altered. "
                f"{KEY_ADVICE}"
            ) from None

    def _env_rows(
        self, name: str, values: Mapping[str, str], *, secret: bool
    ) -> list[tuple[str, str, str | None, bytes | None]]:
        """Checked (service, key, value, sealed) rows: a secret has only its sealed value."""
        checked = [
            (check_env_key(key), check_env_value(key, value)) for key, value in values.items()
        ]
        for key, value in checked:
            check_utf8(key, value)
        return [
            (
                name,
                key,
                None if secret else value,
                self._cipher.encrypt(value, env_context(name, key)) if secret else None,
            )
            for key, value in checked
        ]


def configure(db: sqlite3.Connection, path: Path) -> None:
    """Set a connection's pragmas (they are per connection, so on every open)."""
    db.row_factory = sqlite3.Row
    (mode,) = db.execute("PRAGMA journal_mode = WAL").fetchone()
    if mode != "wal":
        raise StoreError(
            f"cannot open the database {path} in WAL mode (got {mode!r}): "
            "put the data dir on a local file system"
        )
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
    db.execute("PRAGMA secure_delete = ON")
