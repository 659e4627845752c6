"""The agent's outbox: each Call it was sent, and its Result until the control plane acks it.

A file of its own (``outbox.db`` in the agent's data dir, SQLite), apart from the
instance's store: it is the wire's memory, not the instance's state. A Call is written
(``running``) before it is carried out and its Result (``done``) before it is sent, so a
Call id seen again, across a reconnect or a restart of the agent, is never carried out a
second time: a ``done`` one is answered with the kept Result, one left ``running`` by an
agent that stopped half-way with an ``unavailable`` Error saying its outcome is unknown.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Final, Literal

KEEP: Final = 7 * 86400.0
"""Seconds an unacked Result is kept: a control plane away for longer re-sends nothing."""

CallState = Literal["running", "done"]


class Outbox:
    """The kept Calls and Results (see the module)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS calls ("
            " id TEXT PRIMARY KEY, state TEXT NOT NULL, result TEXT, at REAL NOT NULL)"
        )
        self._db.execute("DELETE FROM calls WHERE at < ?", (time.time() - KEEP,))

    def get(self, call: str) -> tuple[CallState, str | None] | None:
        """The call's state and kept Result (a frame's text), or None if never seen."""
        row = self._db.execute("SELECT state, result FROM calls WHERE id = ?", (call,)).fetchone()
        return None if row is None else (row[0], row[1])

    def begin(self, call: str) -> None:
        """Record that ``call`` is being carried out."""
        self._db.execute(
            "INSERT INTO calls (id, state, result, at) VALUES (?, 'running', NULL, ?)",
            (call, time.time()),
        )

    def finish(self, call: str, result: str) -> None:
        """Keep the Result of ``call`` until it is acked."""
        self._db.execute(
            "UPDATE calls SET state = 'done', result = ?, at = ? WHERE id = ?",
            (result, time.time(), call),
        )

    def forget(self, call: str) -> None:
        """The control plane has the Result of ``call``."""
        self._db.execute("DELETE FROM calls WHERE id = ? AND state = 'done'", (call,))

    def close(self) -> None:
        """Close the file."""
        self._db.close()
