"""The cluster state in PostgreSQL, shared by every control plane given the same
``--database postgresql://...``.

psycopg 3's synchronous API runs in trio's worker threads (``trio.to_thread.run_sync``),
over a small psycopg-pool connection pool: each call takes a connection, runs one
transaction and gives the connection back. A trio-native driver would save at most the
thread hop, which is small beside the call: measured on a loaded 2-core machine, a call
(``instances()``, one transaction) took 0.4 to 0.8 ms through a worker thread, about the same
run in the trio thread, and a bare hop 0.08 to 0.15 ms. psycopg's async API is asyncio-only.
(The leader's and the listener's connections, which wait rather than ask, are waited on by
trio itself: see :mod:`~dployr.store.cluster.dedicated`.)

The schema is migrated when the state is opened, in one transaction holding a
transaction-level advisory lock, so that control planes starting at once migrate one after
the other: the first does the work, the others find it done.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Final, NoReturn, TypeVar

import psycopg
import trio
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from dployr.store.cluster import dedicated
from dployr.store.cluster.base import CHANGES, ClusterStateBase
from dployr.store.cluster.dedicated import one_line
from dployr.store.cluster.errors import LeadershipLost
from dployr.store.cluster.notices import Changes
from dployr.store.cluster.schema import POSTGRES_MIGRATIONS
from dployr.store.cluster.tables import Row, Tx
from dployr.store.errors import SchemaTooNew, StoreError
from dployr.store.schema import Migration

T = TypeVar("T")

URL_SCHEMES: Final = ("postgresql://", "postgres://")
CONNECT_TIMEOUT: Final = 10.0
"""Seconds to reach the database when opening, and to wait for a free connection."""
MAX_CONNECTIONS: Final = 8
"""Connections one control plane keeps at most (each call holds one briefly)."""
SCHEMA_TABLE: Final = "dployr_schema"
"""One row per migration applied: version, description, when."""


def advisory_key(purpose: str) -> int:
    """A stable 64-bit advisory lock key for ``purpose``, unlikely to clash with others'."""
    return int.from_bytes(hashlib.sha256(b"dployr " + purpose.encode()).digest()[:8], signed=True)


MIGRATION_LOCK: Final = advisory_key("cluster schema")
LEADER_LOCK: Final = advisory_key("cluster leader")
CHANNEL: Final = "dployr_cluster"
"""The LISTEN/NOTIFY channel of change notices; a notice's payload names what changed."""


def redact(url: str) -> str:
    """``url`` without its password, fit to be shown in a message."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{host}"


def check_url(url: str) -> None:
    """Refuse, in one line, a URL that is not a PostgreSQL connection URL."""
    if not url.startswith(URL_SCHEMES):
        raise StoreError(
            f"unsupported database URL {redact(url)!r}: use postgresql://USER@HOST/DATABASE, "
            "or leave --database out to keep the cluster state in the data dir"
        )
    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error as error:
        raise StoreError(f"invalid database URL {redact(url)!r}: {one_line(error)}") from None


class _PostgresTx:
    """A :class:`~dployr.store.cluster.tables.Tx` over a cursor in a transaction."""

    share_lock = " FOR SHARE"
    update_lock = " FOR UPDATE"

    def __init__(self, cursor: psycopg.Cursor[DictRow]) -> None:
        self._cursor = cursor

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        self._cursor.execute(placeholders(sql), tuple(params))
        return list(self._cursor.fetchall()) if self._cursor.description else []

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        self._cursor.execute(placeholders(sql), tuple(params))
        return self._cursor.rowcount


@functools.cache
def placeholders(sql: str) -> str:
    """The statements of tables.py (``?``, never ``%`` in them) in psycopg's ``%s`` style."""
    return sql.replace("?", "%s")


def migrate(
    db: psycopg.Connection[DictRow],
    shown: str,
    migrations: tuple[Migration, ...] = POSTGRES_MIGRATIONS,
    now: float | None = None,
) -> int:
    """Bring the database up to ``len(migrations)`` in one transaction; the old version.

    The transaction first takes an advisory lock (released when it ends): a second control
    plane starting meanwhile waits, then finds the schema up to date.
    """
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} ("
            " version INTEGER PRIMARY KEY NOT NULL,"
            " description TEXT NOT NULL,"
            " applied_at DOUBLE PRECISION NOT NULL)"
        )
        row = db.execute(f"SELECT coalesce(max(version), 0) AS version FROM {SCHEMA_TABLE}")
        version = int(row.fetchone()["version"])  # type: ignore[index]
        if version > len(migrations):
            raise SchemaTooNew(
                f"the database {shown} has cluster schema version {version}, but this dployr "
                f"knows only up to {len(migrations)}: upgrade dployr to use it"
            )
        for number, migration in enumerate(migrations[version:], start=version + 1):
            for statement in migration.statements:
                db.execute(statement.encode())  # bytes: run as written, no placeholders
            db.execute(
                f"INSERT INTO {SCHEMA_TABLE} (version, description, applied_at)"
                " VALUES (%s, %s, %s)",
                (number, migration.description, time.time() if now is None else now),
            )
    return version


class PostgresClusterState(ClusterStateBase):
    """The cluster state in a PostgreSQL database. Open it with :meth:`open`."""

    def __init__(
        self,
        pool: ConnectionPool,
        url: str,
        clock: Callable[[], float],
        timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        """Wrap an open pool on a migrated database; use :meth:`open` instead."""
        super().__init__(clock)
        self._pool = pool
        self._timeout = timeout
        self._closed = False
        self.url = url
        """The database URL (with its password: show :attr:`shown_url` instead)."""
        self.shown_url = redact(url)
        """The database URL without its password."""

    @classmethod
    def open(
        cls,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = CONNECT_TIMEOUT,
    ) -> PostgresClusterState:
        """Connect to the database at ``url``, migrate it, and open a pool on it.

        Blocks (up to ``timeout`` seconds to connect): call it before serving, or in a worker
        thread. Raises a StoreError with a one-line message if the URL is not one, the
        database cannot be reached, or its schema is newer than this dployr.
        """
        check_url(url)
        shown = redact(url)
        try:
            with psycopg.connect(
                url, connect_timeout=max(1, round(timeout)), row_factory=dict_row
            ) as db:
                migrate(db, shown)
        except psycopg.Error as error:
            raise StoreError(f"cannot open the database {shown}: {one_line(error)}") from None
        pool = ConnectionPool(
            url,
            min_size=1,
            max_size=MAX_CONNECTIONS,
            timeout=timeout,
            open=False,
            check=ConnectionPool.check_connection,
            name="dployr-cluster",
        )
        try:
            pool.open(wait=True, timeout=timeout)
        except PoolTimeout as error:
            pool.close()
            raise StoreError(f"cannot open the database {shown}: {one_line(error)}") from None
        return cls(pool, url, clock, timeout)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<PostgresClusterState {self.shown_url!r} {state}>"

    async def aclose(self) -> None:
        """Close the pool's connections; closing twice is harmless."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        await trio.to_thread.run_sync(self._pool.close)

    # -- leadership and change notices ------------------------------------------------------

    async def lead(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Lead the control planes sharing this database; run until cancelled.

        ``task_status.started()`` is called once this control plane holds the leader's
        advisory lock, on a connection of its own: at once if no other holds it
        (``pg_try_advisory_lock``), else when the holder lets go or its session ends
        (``pg_advisory_lock``, waited on without a thread or a timer). Raises
        :class:`LeadershipLost` if the connection breaks while leading (another control
        plane may lead by then), a StoreError if the database cannot be reached before.
        Cancelling it gives the leadership up.
        """
        db = await dedicated.connect(self.url, self.shown_url, self._timeout)
        leading = False
        try:
            key = [str(LEADER_LOCK).encode()]
            got = await dedicated.execute(db, b"SELECT pg_try_advisory_lock($1::bigint)", key)
            if got != b"t":
                await dedicated.execute(db, b"SELECT pg_advisory_lock($1::bigint)", key)
            leading = True
            task_status.started()
            while True:  # nothing is expected: wait for the connection to break
                await dedicated.wait_input(db)
                dedicated.heard(db)
        except psycopg.Error as error:
            if leading:
                raise LeadershipLost(
                    f"lost the connection to the database {self.shown_url} that made this "
                    f"control plane the leader: {one_line(error)}"
                ) from error
            raise StoreError(
                f"cannot ask the database {self.shown_url} for the leadership: {one_line(error)}"
            ) from error
        finally:
            db.close()  # ends the session, and with it the lock

    @contextlib.asynccontextmanager
    async def notifications(self, *, retry: float = 1.0) -> AsyncIterator[Changes]:
        """What changed, from any control plane on this database (LISTEN/NOTIFY).

        The notices arrive on a connection of their own. If it breaks, it is opened again
        every ``retry`` seconds; once it is back, everything is reported changed (notices
        sent meanwhile were lost).
        """
        changes = Changes()
        async with trio.open_nursery() as nursery:
            await nursery.start(self._listen, changes, retry)
            try:
                yield changes
            finally:
                nursery.cancel_scope.cancel()

    async def _listen(
        self,
        changes: Changes,
        retry: float,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> NoReturn:
        def publish(payloads: list[str]) -> None:
            # Anything else sent on the channel is not ours.
            changes.publish(payload for payload in payloads if payload in CHANGES)

        listening = False
        while True:
            try:
                db = await dedicated.connect(self.url, self.shown_url, self._timeout)
            except StoreError:
                if not listening:
                    raise
                await trio.sleep(retry)
                continue
            try:
                await dedicated.execute(db, f"LISTEN {CHANNEL}".encode())
                if listening:
                    changes.publish(CHANGES)
                else:
                    listening = True
                    task_status.started()
                while True:
                    publish(dedicated.heard(db))
                    await dedicated.wait_input(db)
            except psycopg.Error:
                pass  # the connection broke: open another
            finally:
                db.close()
            await trio.sleep(retry)

    # -- internals -----------------------------------------------------------------------------

    async def _write(self, body: Callable[[Tx], T], *changed: str) -> T:
        return await trio.to_thread.run_sync(self._transaction, body, changed)

    async def _read(self, body: Callable[[Tx], T]) -> T:
        return await trio.to_thread.run_sync(self._transaction, body, ())

    def _transaction(self, body: Callable[[Tx], T], changed: tuple[str, ...]) -> T:
        """In a worker thread: one transaction on a pooled connection."""
        if self._closed:
            raise StoreError(f"the cluster state {self.shown_url} is closed")
        try:
            with (
                self._pool.connection() as db,
                db.transaction(),
                db.cursor(row_factory=dict_row) as cursor,
            ):
                result = body(_PostgresTx(cursor))
                if changed:  # sent to the listeners when the transaction commits
                    cursor.execute(
                        "SELECT pg_notify(%s, change) FROM unnest(%s::text[]) AS change",
                        (CHANNEL, list(changed)),
                    )
                return result
        except PoolTimeout as error:
            raise StoreError(
                f"no connection to the database {self.shown_url}: {one_line(error)}"
            ) from error
        except psycopg.Error as error:
            raise StoreError(f"the database {self.shown_url} failed: {one_line(error)}") from error
