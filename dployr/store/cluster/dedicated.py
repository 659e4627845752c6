"""PostgreSQL connections of their own for leadership and change notices, waited on by trio.

The leader holds a session-level advisory lock on a connection of its own (the lock lives
as long as that connection); the change notices arrive on another (``LISTEN``). Both sit
idle until the server sends something, so they are not pooled and not given a worker thread:
trio waits for their socket to become readable (``trio.lowlevel.wait_readable``) and libpq
reads what arrived without blocking. Waiting costs nothing, and cancelling a wait is a plain
trio cancellation.

A connection killed with its process (``kill -9``) is closed by the kernel, so the server
ends its session at once, releasing its lock. One cut silently (a partition) is noticed by
TCP keepalives on both sides within about 10 s; a server waiting for a lock for a client
that went away notices it within a second (``client_connection_check_interval``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import psycopg
import trio
from psycopg import pq

from dployr.store.errors import StoreError

KEEPALIVES: Final = "keepalives=1 keepalives_idle=5 keepalives_interval=1 keepalives_count=3"
"""libpq's TCP keepalives: a silent peer is given up after about 8 s."""
SESSION_SETTINGS: Final = (
    b"SET tcp_keepalives_idle = 5",
    b"SET tcp_keepalives_interval = 1",
    b"SET tcp_keepalives_count = 3",
    b"SET client_connection_check_interval = 1000",
)
"""The server's side of the same: it ends a session whose client is gone within seconds."""


async def connect(
    url: str, shown: str, connect_timeout: float
) -> psycopg.Connection[tuple[object, ...]]:
    """A new connection in autocommit mode, with keepalives; StoreError in one line."""

    def blocking() -> psycopg.Connection[tuple[object, ...]]:
        conninfo = psycopg.conninfo.make_conninfo(
            url, connect_timeout=max(1, round(connect_timeout))
        )
        db = psycopg.connect(f"{conninfo} {KEEPALIVES}", autocommit=True)
        try:
            for setting in SESSION_SETTINGS:
                db.execute(setting)
        except BaseException:
            db.close()
            raise
        return db

    try:
        return await trio.to_thread.run_sync(blocking)
    except psycopg.Error as error:
        raise StoreError(f"cannot connect to the database {shown}: {one_line(error)}") from None


def one_line(error: BaseException) -> str:
    """An error's message on one line (libpq's span several)."""
    return " ".join(str(error).split()) or type(error).__name__


async def wait_input(db: psycopg.Connection[tuple[object, ...]]) -> None:
    """Wait until the server sends something and read it; OperationalError once the
    connection is gone."""
    await trio.lowlevel.wait_readable(db.pgconn.socket)
    db.pgconn.consume_input()


async def execute(
    db: psycopg.Connection[tuple[object, ...]], sql: bytes, params: Sequence[bytes] = ()
) -> bytes | None:
    """Run one statement without blocking the trio thread; the first value of its result
    (None for a statement that returns no rows).

    The statement is sent (a few bytes: libpq writes them at once) and its result awaited
    on the socket; cancelling the wait leaves the connection in the middle of a statement,
    so the caller closes it. Notices that arrive meanwhile wait in libpq for :func:`heard`.
    """
    pgconn = db.pgconn
    pgconn.send_query_params(sql, list(params))
    last: pq.abc.PGresult | None = None
    while True:
        while pgconn.is_busy():
            await wait_input(db)
        result = pgconn.get_result()
        if result is None:
            break
        last = result
    if last is None or last.status not in {pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK}:
        message = b"" if last is None else (last.error_message or b"")
        raise psycopg.OperationalError(message.decode(errors="replace") or "no result")
    if last.status != pq.ExecStatus.TUPLES_OK or not last.ntuples:
        return None
    return last.get_value(0, 0)


def heard(db: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """The payloads of the notices that arrived, taken from libpq's queue."""
    payloads = []
    while (notice := db.pgconn.notifies()) is not None:
        payloads.append(notice.extra.decode(errors="replace"))
    return payloads
