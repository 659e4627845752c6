"""The runs of scheduled jobs: one row per run (started, skipped or missed), and since
when each job's schedule applies.

Every method is one transaction. A run is recorded before its process starts, so a daemon
killed at any instant finds it and never runs that due time again; a run the daemon died
during is marked failed when the next daemon starts (:meth:`JobTables.running_runs`).

The log lines a run wrote are found by cursor: the run keeps the ranges of cursors of its
output batches and dployr's lines about it (``output``, JSON ``[[first, last], ...]``),
written when it ends. A run the daemon died during gets the ranges its journal noted as
they were written (``engine/jobs/run.py``), when the next daemon starts.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence

from dployr.schedule import JobRun, RunStatus, Trigger
from dployr.store.base import StoreBase

_COLUMNS = (
    "number, service, deployment, trigger, status, scheduled_at, started_at, ended_at,"
    " exit_code, signal, message, first_cursor, last_cursor"
)


def _run(row: sqlite3.Row) -> JobRun:
    return JobRun(
        id=row["number"],
        service=row["service"],
        deployment=row["deployment"],
        trigger=Trigger(row["trigger"]),
        status=RunStatus(row["status"]),
        scheduled_at=row["scheduled_at"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        exit_code=row["exit_code"],
        signal=row["signal"],
        message=row["message"],
        first_cursor=row["first_cursor"],
        last_cursor=row["last_cursor"],
    )


def _insert_run(
    db: sqlite3.Connection,
    service: str,
    *,
    deployment: int,
    trigger: Trigger,
    status: RunStatus,
    scheduled_at: float | None,
    started_at: float | None = None,
    ended_at: float | None = None,
    message: str = "",
) -> JobRun:
    """Insert a run numbered the job's next, in the caller's transaction."""
    (number,) = db.execute(
        "SELECT COALESCE(MAX(number), 0) + 1 FROM job_runs WHERE service = ?", (service,)
    ).fetchone()
    db.execute(
        "INSERT INTO job_runs (service, number, deployment, trigger, status, scheduled_at,"
        " started_at, ended_at, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            service,
            number,
            deployment,
            trigger.value,
            status.value,
            scheduled_at,
            started_at,
            ended_at,
            message,
        ),
    )
    row = db.execute(
        f"SELECT {_COLUMNS} FROM job_runs WHERE service = ? AND number = ?", (service, number)
    ).fetchone()
    return _run(row)


class JobTables(StoreBase):
    """The runs of jobs and their schedules' starts (see :mod:`dployr.engine.jobs`)."""

    def add_run(
        self,
        service: str,
        *,
        deployment: int,
        trigger: Trigger,
        status: RunStatus,
        scheduled_at: float | None,
        started_at: float | None = None,
        ended_at: float | None = None,
        message: str = "",
    ) -> JobRun:
        """Record a run (numbered the job's next) and return it."""
        with self._write() as db:
            return _insert_run(
                db,
                service,
                deployment=deployment,
                trigger=trigger,
                status=status,
                scheduled_at=scheduled_at,
                started_at=started_at,
                ended_at=ended_at,
                message=message,
            )

    def add_due_runs(
        self, runs: Sequence[tuple[str, int]], *, scheduled_at: float, started_at: float | None
    ) -> list[JobRun]:
        """Record the runs of several jobs due at one instant, each ``(service,
        deployment)``, as running, in one transaction: they are let go together once it
        is committed (the start gate of dployr.engine.jobs), and their start time may be
        recorded after (:meth:`due_runs_started`)."""
        with self._write() as db:
            return [
                _insert_run(
                    db,
                    service,
                    deployment=deployment,
                    trigger=Trigger.SCHEDULE,
                    status=RunStatus.RUNNING,
                    scheduled_at=scheduled_at,
                    started_at=started_at,
                )
                for service, deployment in runs
            ]

    def due_runs_started(self, runs: Sequence[tuple[str, int]], *, started_at: float) -> None:
        """The runs ``(service, number)`` recorded by :meth:`add_due_runs` started at
        ``started_at``: one transaction."""
        with self._write() as db:
            db.executemany(
                "UPDATE job_runs SET started_at = ? WHERE service = ? AND number = ?",
                [(started_at, service, number) for service, number in runs],
            )

    def run_started(self, service: str, number: int, *, pid: int, cursor: int | None) -> None:
        """The run's process started (its pid is kept for the record; the cursor of its first
        line, dployr's "run 7 started")."""
        with self._write() as db:
            db.execute(
                "UPDATE job_runs SET pid = ?, first_cursor = COALESCE(first_cursor, ?)"
                " WHERE service = ? AND number = ?",
                (pid, cursor, service, number),
            )

    def finish_run(
        self,
        service: str,
        number: int,
        *,
        status: RunStatus,
        ended_at: float,
        exit_code: int | None,
        signal: int | None,
        message: str,
        output: Iterable[tuple[int, int]],
    ) -> JobRun:
        """Record how a run ended, and where its lines are in the service's log."""
        ranges = [list(pair) for pair in output]
        first = ranges[0][0] if ranges else None
        last = ranges[-1][1] if ranges else None
        with self._write() as db:
            db.execute(
                "UPDATE job_runs SET status = ?, ended_at = ?, exit_code = ?, signal = ?,"
                " message = ?, output = ?, first_cursor = COALESCE(?, first_cursor),"
                " last_cursor = ? WHERE service = ? AND number = ?",
                (
                    status.value,
                    ended_at,
                    exit_code,
                    signal,
                    message,
                    json.dumps(ranges),
                    first,
                    last,
                    service,
                    number,
                ),
            )
            row = db.execute(
                f"SELECT {_COLUMNS} FROM job_runs WHERE service = ? AND number = ?",
                (service, number),
            ).fetchone()
        return _run(row)

    def job_runs(self, service: str, limit: int = 20) -> list[JobRun]:
        """The job's last ``limit`` runs, newest first."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM job_runs WHERE service = ? ORDER BY number DESC LIMIT ?",
                (service, limit),
            ).fetchall()
        return [_run(row) for row in rows]

    def job_run(self, service: str, number: int) -> tuple[JobRun, list[tuple[int, int]]] | None:
        """One run and the cursor ranges of its lines (None if the job has no such run)."""
        with self._read() as db:
            row = db.execute(
                f"SELECT {_COLUMNS}, output FROM job_runs WHERE service = ? AND number = ?",
                (service, number),
            ).fetchone()
        if row is None:
            return None
        ranges = [(int(a), int(b)) for a, b in json.loads(row["output"] or "[]")]
        return _run(row), ranges

    def last_due_time(self, service: str) -> float | None:
        """The latest due time the job has a record of: run, caught up, skipped or missed."""
        with self._read() as db:
            (value,) = db.execute(
                "SELECT MAX(scheduled_at) FROM job_runs WHERE service = ?", (service,)
            ).fetchone()
        return None if value is None else float(value)

    def scheduled_since(self, service: str) -> float | None:
        """Since when the job's schedule has applied without a stop (None: it is not scheduled)."""
        with self._read() as db:
            row = db.execute(
                "SELECT since FROM job_schedules WHERE service = ?", (service,)
            ).fetchone()
        return None if row is None else float(row["since"])

    def set_scheduled_since(self, service: str, since: float | None) -> None:
        """Record since when the schedule applies (None: the job was stopped, nothing is due)."""
        with self._write() as db:
            if since is None:
                db.execute("DELETE FROM job_schedules WHERE service = ?", (service,))
            else:
                db.execute(
                    "INSERT INTO job_schedules (service, since) VALUES (?, ?)"
                    " ON CONFLICT (service) DO UPDATE SET since = excluded.since",
                    (service, since),
                )

    def running_runs(self, service: str) -> list[JobRun]:
        """The job's runs recorded as running. At daemon start: killed with the daemon
        before it, to be finished as failed (:meth:`finish_run`), never run again."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM job_runs WHERE service = ? AND status = ? ORDER BY number",
                (service, RunStatus.RUNNING.value),
            ).fetchall()
        return [_run(row) for row in rows]
