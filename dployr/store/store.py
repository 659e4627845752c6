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
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import attrs

from dployr import serde
from dployr.engine.metrics_policy import InstancePoint, MetricPoint, Resolution, Sample
from dployr.models import (
    Deployment,
    DeploymentStatus,
    DesiredState,
    EnvVar,
    InvalidSetting,
    ServiceSettings,
    check_env_key,
    check_env_value,
    check_name,
)
from dployr.store import metrics as metrics_sql
from dployr.store import secrets as secret_files
from dployr.store.errors import (
    DeploymentFinished,
    DiskFull,
    InvalidToken,
    InvalidTokenName,
    MasterKeyError,
    ServiceExists,
    StoreError,
    TokenExists,
    UnknownDeployment,
    UnknownService,
    UnknownToken,
    WrongMasterKey,
)
from dployr.store.records import AuditRecord, ProcessRecord, Scope, ServiceRecord, TokenRecord
from dployr.store.reserve import DiskReserve
from dployr.store.schema import migrate
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

_TOKEN_BYTES = 32
_MAX_TOKEN_NAME = 100
_MAX_TOKEN_LIFETIME = 10 * 365 * 86400.0
_LAST_USED_STEP = 60.0
"""A token's ``last_used_at`` is written at most this often (seconds)."""
_SERVICE_SELECT = (
    "SELECT s.*, d.number AS active_number FROM services s"
    " LEFT JOIN deployments d ON d.id = s.active_deployment"
)
"""A service's row with its active deployment's number (the column holds its row id)."""
_UNFINISHED = tuple(status.value for status in DeploymentStatus if not status.finished)


class _Unset:
    """The type of :data:`UNSET`."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()
"""The default of :meth:`Store.update_deployment`'s fields: leave the field as it is."""


class Store:
    """The daemon's embedded database. Open it with :meth:`Store.open`.

    Use it as a context manager, or call :meth:`close`. Every method either does all it was
    asked or, raising a :class:`~dployr.errors.DployrError`, nothing at all.
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
            _configure(db, path)
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

    def close(self) -> None:
        """Close the database; closing twice is harmless. The store is unusable afterwards."""
        if self._db is not None:
            db, self._db = self._db, None
            db.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._db is None

    def __enter__(self) -> Store:
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

    # -- services ----------------------------------------------------------------------------

    def create_service(
        self,
        name: str,
        settings: ServiceSettings,
        *,
        desired: DesiredState = DesiredState.STOPPED,
    ) -> ServiceRecord:
        """Add a service; raise :class:`ServiceExists` if one has that name already.

        A new service is ``stopped`` until something (a deploy) asks for it to run.
        """
        check_name(name)
        now = self._clock()
        record = ServiceRecord(name, settings, desired, None, now, now)
        with self._write() as db:
            if self._service_row(db, name) is not None:
                raise ServiceExists(f"a service named {name!r} already exists")
            db.execute(
                "INSERT INTO services (name, settings, desired, active_deployment, created_at,"
                " updated_at) VALUES (?, ?, ?, NULL, ?, ?)",
                (name, serde.dumps(settings), desired.value, now, now),
            )
        return record

    def get_service(self, name: str) -> ServiceRecord | None:
        """The service called ``name``, or None."""
        with self._read() as db:
            row = self._service_row(db, name)
        return None if row is None else _service_record(row)

    def list_services(self) -> list[ServiceRecord]:
        """Every service, by name."""
        with self._read() as db:
            rows = db.execute(f"{_SERVICE_SELECT} ORDER BY s.name").fetchall()
        return [_service_record(row) for row in rows]

    def update_settings(self, name: str, settings: ServiceSettings) -> ServiceRecord:
        """Replace a service's settings (they apply at its next deploy)."""
        return self._update_service(name, settings=serde.dumps(settings))

    def set_desired(self, name: str, desired: DesiredState) -> ServiceRecord:
        """Record whether the service should run; call before acting on it."""
        return self._update_service(name, desired=DesiredState(desired).value)

    def set_active_deployment(self, name: str, number: int | None) -> ServiceRecord:
        """Record which of the service's deployments should run (None: none yet)."""
        if number is None:
            return self._update_service(name, active_deployment=None)
        with self._write() as db:
            self._require_service(db, name)
            return self._update_service_in(
                db, name, active_deployment=self._deployment_key(db, name, number)
            )

    def activate_deployment(
        self, name: str, number: int, *, settings: ServiceSettings | None = None
    ) -> ServiceRecord:
        """A deploy (or rollback) succeeded: in one transaction, make it the active
        deployment and record it ``succeeded``, add the variables it brought to the
        service's environment and, given ``settings``, save them as the service's settings
        (what the next deploy uses). So a daemon killed at any moment finds either all of
        it or none."""
        with self._write() as db:
            self._require_service(db, name)
            key = self._deployment_key(db, name, number)
            db.execute(
                "INSERT INTO env (service, key, value, sealed)"
                " SELECT ?, key, value, sealed FROM deployment_env WHERE deployment = ?"
                " ON CONFLICT (service, key)"
                " DO UPDATE SET value = excluded.value, sealed = excluded.sealed",
                (name, key),
            )
            db.execute("DELETE FROM deployment_env WHERE deployment = ?", (key,))
            db.execute(
                "UPDATE deployments SET status = ?, finished_at = COALESCE(finished_at, ?)"
                " WHERE id = ?",
                (DeploymentStatus.SUCCEEDED.value, self._clock(), key),
            )
            columns: dict[str, object] = {"active_deployment": key}
            if settings is not None:
                columns["settings"] = serde.dumps(settings)
            return self._update_service_in(db, name, **columns)

    def delete_service(self, name: str) -> None:
        """Remove a service with its environment, deployments, process records and metrics."""
        with self._write() as db:
            self._require_service(db, name)
            # The foreign keys cascade to env, deployments, processes and metrics.
            db.execute("DELETE FROM services WHERE name = ?", (name,))

    # -- environment -----------------------------------------------------------------------

    def set_env(self, name: str, values: Mapping[str, str], *, secret: bool = False) -> None:
        """Set environment variables of a service: all of them, or none if one is invalid.

        With ``secret=True`` the values are stored encrypted and are never listed. A key set
        again takes the new value and the new secrecy. The process sees the change at its
        next start, restart or deploy.
        """
        rows = self._env_rows(name, values, secret=secret)
        with self._write() as db:
            self._require_service(db, name)
            db.executemany(
                "INSERT INTO env (service, key, value, sealed) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (service, key)"
                " DO UPDATE SET value = excluded.value, sealed = excluded.sealed",
                rows,
            )
            if rows:
                self._touch(db, name)

    def _env_rows(
        self, name: str, values: Mapping[str, str], *, secret: bool
    ) -> list[tuple[str, str, str | None, bytes | None]]:
        """Checked (service, key, value, sealed) rows: a secret has only its sealed value."""
        checked = [
            (check_env_key(key), check_env_value(key, value)) for key, value in values.items()
        ]
        for key, value in checked:
            _check_utf8(key, value)
        return [
            (
                name,
                key,
                None if secret else value,
                self._cipher.encrypt(value, _env_context(name, key)) if secret else None,
            )
            for key, value in checked
        ]

    def unset_env(self, name: str, keys: Iterable[str]) -> list[str]:
        """Remove environment variables of a service; return the keys that were set."""
        removed = []
        with self._write() as db:
            self._require_service(db, name)
            for key in dict.fromkeys(keys):
                cursor = db.execute("DELETE FROM env WHERE service = ? AND key = ?", (name, key))
                if cursor.rowcount:
                    removed.append(key)
            if removed:
                self._touch(db, name)
        return removed

    def env(self, name: str) -> list[EnvVar]:
        """A service's environment variables with secrets decrypted, by key.

        Only for building the process environment: never show these values to a user
        (use :meth:`env_listing`).
        """
        with self._read() as db:
            self._require_service(db, name)
            rows = db.execute(
                "SELECT key, value, sealed FROM env WHERE service = ? ORDER BY key", (name,)
            ).fetchall()
        return [
            EnvVar(row["key"], row["value"])
            if row["sealed"] is None
            else EnvVar(row["key"], self._unseal(name, row["key"], row["sealed"]), secret=True)
            for row in rows
        ]

    def env_listing(self, name: str) -> list[EnvVar]:
        """A service's environment variables as shown to users: secrets masked, by key."""
        with self._read() as db:
            self._require_service(db, name)
            rows = db.execute(
                "SELECT key, value FROM env WHERE service = ? ORDER BY key", (name,)
            ).fetchall()
        return [
            EnvVar(row["key"], SECRET_MASK, secret=True)
            if row["value"] is None
            else EnvVar(row["key"], row["value"])
            for row in rows
        ]

    # -- git credentials -------------------------------------------------------------------

    def set_git_credential(self, name: str, remote: str, password: str) -> None:
        """Keep the password of a service's git remote, sealed.

        ``remote`` is the remote as the settings hold it (its password shown as ``***``):
        the password is only ever handed back with it.
        """
        with self._write() as db:
            self._require_service(db, name)
            sealed = self._cipher.encrypt(password, _git_context(name, remote))
            db.execute(
                "INSERT INTO git_credentials (service, remote, sealed) VALUES (?, ?, ?)"
                " ON CONFLICT (service)"
                " DO UPDATE SET remote = excluded.remote, sealed = excluded.sealed",
                (name, remote, sealed),
            )

    def forget_git_credential(self, name: str) -> None:
        """Forget the password kept for a service's git remote, if any."""
        with self._write() as db:
            db.execute("DELETE FROM git_credentials WHERE service = ?", (name,))

    def git_credential(self, name: str) -> tuple[str, str] | None:
        """The remote and the decrypted password kept for a service, if any.

        Only for handing to git: never show the password to a user.
        """
        with self._read() as db:
            row = db.execute(
                "SELECT remote, sealed FROM git_credentials WHERE service = ?", (name,)
            ).fetchone()
        if row is None:
            return None
        try:
            password = self._cipher.decrypt(row["sealed"], _git_context(name, row["remote"]))
        except WrongMasterKey:
            raise WrongMasterKey(
                f"cannot decrypt the git password of service {name!r} with the master key "
                f"from {self._cipher.source}: it was encrypted with another key, or altered. "
                f"{_KEY_ADVICE}"
            ) from None
        return row["remote"], password

    # -- deployments -----------------------------------------------------------------------

    def create_deployment(
        self,
        name: str,
        settings: ServiceSettings,
        *,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        rollback_of: Deployment | None = None,
    ) -> Deployment:
        """Start recording a deploy of a service with these settings (status ``pending``).

        Its number is the service's next one (1, 2, 3 ...). ``env`` and ``secrets`` are the
        variables the deploy brings: they are kept with it (secrets sealed) and join the
        service's environment only when it succeeds (:meth:`activate_deployment`). A
        rollback names the deployment whose release it runs again.
        """
        now = self._clock()
        pending = self._env_rows(name, env or {}, secret=False)
        pending += self._env_rows(name, secrets or {}, secret=True)
        release = rollback_of.folder if rollback_of is not None else None
        with self._write() as db:
            self._require_service(db, name)
            (number,) = db.execute(
                "SELECT COALESCE(MAX(number), 0) + 1 FROM deployments WHERE service = ?", (name,)
            ).fetchone()
            cursor = db.execute(
                "INSERT INTO deployments (service, number, status, settings, created_at,"
                " revision, rollback_of, release, image) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    number,
                    DeploymentStatus.PENDING.value,
                    serde.dumps(settings),
                    now,
                    rollback_of.revision if rollback_of is not None else None,
                    rollback_of.id if rollback_of is not None else None,
                    release if release is not None else number,
                    rollback_of.image if rollback_of is not None else None,
                ),
            )
            key = int(cursor.lastrowid or 0)  # always set after an INSERT
            db.executemany(
                "INSERT INTO deployment_env (deployment, key, value, sealed) VALUES (?, ?, ?, ?)",
                [(key, *row[1:]) for row in pending],
            )
        return Deployment(
            number,
            name,
            DeploymentStatus.PENDING,
            settings,
            now,
            revision=rollback_of.revision if rollback_of is not None else None,
            rollback_of=rollback_of.id if rollback_of is not None else None,
            release=release,
            image=rollback_of.image if rollback_of is not None else None,
        )

    def deployment_env(self, name: str, number: int) -> dict[str, str]:
        """The variables a deployment brought, secrets decrypted: for its processes only."""
        with self._read() as db:
            key = self._deployment_key(db, name, number)
            rows = db.execute(
                "SELECT key, value, sealed FROM deployment_env WHERE deployment = ?", (key,)
            ).fetchall()
        return {
            row["key"]: row["value"]
            if row["sealed"] is None
            else self._unseal(name, row["key"], row["sealed"])
            for row in rows
        }

    def update_deployment(
        self,
        name: str,
        number: int,
        *,
        status: DeploymentStatus | _Unset = UNSET,
        revision: str | _Unset | None = UNSET,
        exit_code: int | _Unset | None = UNSET,
        error: str | _Unset | None = UNSET,
        output_tail: Sequence[str] | _Unset = UNSET,
        image: str | _Unset | None = UNSET,
    ) -> Deployment:
        """Change the given fields of a deployment and return it as it is now.

        ``finished_at`` is set (to now) when the status becomes a finished one, and the
        variables the deploy brought are then forgotten (they joined the service's
        environment when it was activated, or never will). A finished
        deployment's status never changes again (:class:`DeploymentFinished`); its other
        fields may still be filled in.
        """
        changes: dict[str, Any] = {}
        if not isinstance(revision, _Unset):
            changes["revision"] = revision
        if not isinstance(exit_code, _Unset):
            changes["exit_code"] = exit_code
        if not isinstance(image, _Unset):
            changes["image"] = image
        if not isinstance(error, _Unset):
            changes["error"] = error
        if not isinstance(output_tail, _Unset):
            if isinstance(output_tail, str):
                raise TypeError("output_tail is a sequence of lines, not one string")
            changes["output_tail"] = tuple(output_tail)
        with self._write() as db:
            current = self._deployment_in(db, name, number)
            if current is None:
                raise UnknownDeployment(f"{name!r} has no deployment {number}")
            new_status = None if isinstance(status, _Unset) else DeploymentStatus(status)
            if new_status is not None and new_status is not current.status:
                if current.status.finished:
                    raise DeploymentFinished(
                        f"deployment {number} of {name} already {current.status.value}; "
                        f"it cannot become {new_status.value}"
                    )
                changes["status"] = new_status
                if new_status.finished:
                    changes["finished_at"] = self._clock()
                    # What it brought is in the service's environment now, or never will be.
                    db.execute(
                        "DELETE FROM deployment_env WHERE deployment = ?",
                        (self._deployment_key(db, name, number),),
                    )
            updated = attrs.evolve(current, **changes)
            db.execute(
                "UPDATE deployments SET status = ?, revision = ?, finished_at = ?,"
                " exit_code = ?, error = ?, output_tail = ?, image = ?"
                " WHERE service = ? AND number = ?",
                (
                    updated.status.value,
                    updated.revision,
                    updated.finished_at,
                    updated.exit_code,
                    updated.error,
                    json.dumps(updated.output_tail, ensure_ascii=False),
                    updated.image,
                    name,
                    number,
                ),
            )
        return updated

    def get_deployment(self, name: str, number: int) -> Deployment | None:
        """Deployment ``number`` of service ``name``, or None."""
        with self._read() as db:
            return self._deployment_in(db, name, number)

    def deployments(self, name: str, limit: int = 50) -> list[Deployment]:
        """A service's latest ``limit`` deployments, newest first."""
        if limit < 0:
            raise ValueError(f"limit must be 0 or more, not {limit}")
        with self._read() as db:
            self._require_service(db, name)
            rows = db.execute(
                "SELECT * FROM deployments WHERE service = ? ORDER BY number DESC LIMIT ?",
                (name, limit),
            ).fetchall()
        return [_deployment(row) for row in rows]

    def fail_interrupted_deployments(self, reason: str) -> list[Deployment]:
        """Mark every unfinished deployment ``failed`` with ``reason``; return them, by id.

        Called when the daemon starts: a deployment still unfinished then was interrupted by
        the previous daemon's end.
        """
        now = self._clock()
        with self._write() as db:
            rows = db.execute(
                "UPDATE deployments SET status = ?, error = ?, finished_at = ?"
                f" WHERE status IN ({', '.join('?' * len(_UNFINISHED))})"
                " RETURNING *",
                (DeploymentStatus.FAILED.value, reason, now, *_UNFINISHED),
            ).fetchall()
            db.executemany(
                "DELETE FROM deployment_env WHERE deployment = ?", [(row["id"],) for row in rows]
            )
        return sorted((_deployment(row) for row in rows), key=lambda d: (d.service, d.id))

    # -- process groups ----------------------------------------------------------------------

    def record_process(  # noqa: PLR0917 -- the signature other modules were promised
        self,
        name: str,
        deployment_id: int,
        pid: int,
        pgid: int,
        started_at: float,
        token: str,
    ) -> ProcessRecord:
        """Remember a process group the daemon started (replacing a stale record of the pid).

        ``token`` is the random value the daemon put in the process's environment.
        """
        record = ProcessRecord(name, deployment_id, pid, pgid, started_at, token)
        with self._write() as db:
            self._require_service(db, name)
            key = self._deployment_key(db, name, deployment_id)
            db.execute(
                "INSERT OR REPLACE INTO processes"
                " (pid, service, deployment, pgid, started_at, token) VALUES (?, ?, ?, ?, ?, ?)",
                (pid, name, key, pgid, started_at, token),
            )
        return record

    def forget_process(self, pid: int) -> bool:
        """Forget the process recorded under ``pid``; return whether there was one."""
        with self._write() as db:
            cursor = db.execute("DELETE FROM processes WHERE pid = ?", (pid,))
        return cursor.rowcount > 0

    def recorded_processes(self) -> list[ProcessRecord]:
        """Every recorded process group, by service then pid."""
        with self._read() as db:
            rows = db.execute(
                "SELECT p.*, d.number FROM processes p JOIN deployments d ON d.id = p.deployment"
                " ORDER BY p.service, p.pid"
            ).fetchall()
        return [
            ProcessRecord(
                row["service"],
                row["number"],
                row["pid"],
                row["pgid"],
                row["started_at"],
                row["token"],
            )
            for row in rows
        ]

    # -- metrics history -------------------------------------------------------------------

    def record_samples(self, samples: Iterable[Sample]) -> int:
        """Record a round of samples in one transaction; return how many were new.

        Each sample is kept as it is for an hour and added to its minute's bucket (count,
        sums, maxima), kept for 7 days; data older than that is deleted in the same
        transaction. Recording a sample twice changes nothing. A sample older than an hour,
        or of a service that no longer exists, is skipped.
        """
        batch = list(samples)
        now = self._clock()
        with self._write() as db:
            return metrics_sql.record(db, batch, now)

    def metrics(
        self,
        name: str,
        since: float,
        until: float | None = None,
        *,
        resolution: Resolution | None = None,
    ) -> list[MetricPoint]:
        """A service's history from ``since`` to ``until`` (Unix seconds; None: no end), by time.

        If the range starts within the last hour, every sample with ``since <= ts < until``
        is a point (``Resolution.RAW``). If it starts earlier, the whole range, last hour
        included, is read in minutes: one point per minute whose start is in
        ``[minute of since, until)``, with the means and maxima of its samples
        (``Resolution.MINUTE``; the current minute holds the samples recorded so far).
        ``resolution`` forces one or the other (raw samples exist for the last hour only).
        Raises :class:`UnknownService` for a service that does not exist.
        """
        metrics_sql.check_range(since, until)
        now = self._clock()
        with self._read() as db:
            self._require_service(db, name)
            return metrics_sql.service_points(
                db, name, since=since, until=until, resolution=resolution, now=now
            )

    def instance_metrics(
        self,
        since: float,
        until: float | None = None,
        *,
        resolution: Resolution | None = None,
    ) -> list[InstancePoint]:
        """The instance's history from ``since`` to ``until``, read as :meth:`metrics` is."""
        metrics_sql.check_range(since, until)
        now = self._clock()
        with self._read() as db:
            return metrics_sql.instance_points(
                db, since=since, until=until, resolution=resolution, now=now
            )

    # -- API tokens ----------------------------------------------------------------------

    def create_token(
        self,
        name: str,
        *,
        scope: Scope = Scope.ADMIN,
        service: str | None = None,
        expires_in: float | None = None,
    ) -> str:
        """Create an API token called ``name`` and return it: the only time it is visible.

        ``scope`` says what it may do, ``service`` limits it to one service and
        ``expires_in`` (seconds, 1 to 10 years) ends it. Only its SHA-256 digest is stored.
        Raises :class:`TokenExists` for a name in use, :class:`InvalidToken` for a bad scope
        or lifetime.
        """
        _check_token_name(name)
        if not isinstance(scope, Scope):
            raise InvalidToken(f"invalid scope {scope!r}: use read, deploy or admin")
        if service is not None:
            check_name(service)
        now = self._clock()
        expires_at = None
        if expires_in is not None:
            if not 1 <= expires_in <= _MAX_TOKEN_LIFETIME:
                raise InvalidToken("a token's lifetime must be from 1 second to 10 years")
            expires_at = now + expires_in
        token = TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)
        with self._write() as db:
            if db.execute("SELECT 1 FROM api_tokens WHERE name = ?", (name,)).fetchone():
                raise TokenExists(f"an API token named {name!r} already exists")
            db.execute(
                "INSERT INTO api_tokens (name, sha256, created_at, scope, service, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (name, _digest(token), now, scope.value, service, expires_at),
            )
        return token

    def authenticate(self, token: str, *, use: bool = True) -> TokenRecord | None:
        """The API token ``token`` is, or None if it is unknown, revoked or expired.

        The digest is compared with every stored one in constant time. With ``use`` (a
        request it authenticates), the token's ``last_used_at`` is written, at most once a
        minute.
        """
        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
            return None
        digest = _digest(token)
        with self._read() as db:
            rows = db.execute("SELECT * FROM api_tokens").fetchall()
        # Compare with every stored digest, without stopping at a match.
        found = None
        for row in rows:
            if hmac.compare_digest(row["sha256"], digest):
                found = row
        if found is None:
            return None
        record = _token_record(found)
        now = self._clock()
        if record.expires_at is not None and now >= record.expires_at:
            return None
        if use and (record.last_used_at is None or now - record.last_used_at >= _LAST_USED_STEP):
            # Best effort: a database that cannot be written (a full disk) must not stop
            # every request; the time of last use is written at a later one.
            with contextlib.suppress(StoreError), self._write() as db:
                db.execute("UPDATE api_tokens SET last_used_at = ? WHERE sha256 = ?", (now, digest))
                record = attrs.evolve(record, last_used_at=now)
        return record

    def verify_token(self, token: str) -> bool:
        """Whether ``token`` is a valid API token (see :meth:`authenticate`); not a use."""
        return self.authenticate(token, use=False) is not None

    def list_tokens(self) -> list[TokenRecord]:
        """Every API token (name, rights, times), by name."""
        with self._read() as db:
            rows = db.execute("SELECT * FROM api_tokens ORDER BY name").fetchall()
        return [_token_record(row) for row in rows]

    def delete_token(self, name: str) -> None:
        """Revoke the API token called ``name``; raise :class:`UnknownToken` if none is."""
        with self._write() as db:
            cursor = db.execute("DELETE FROM api_tokens WHERE name = ?", (name,))
            if not cursor.rowcount:
                raise UnknownToken(f"no API token named {name!r}")

    # -- dashboard sessions and the audit log ----------------------------------------------

    def revoke_session(self, session_id: str, until: float) -> None:
        """Remember that the dashboard session ``session_id`` was logged out.

        ``until`` is when it would have expired anyway: past it the record is dropped.
        """
        now = self._clock()
        with self._write() as db:
            db.execute("DELETE FROM revoked_sessions WHERE until <= ?", (now,))
            db.execute(
                "INSERT OR REPLACE INTO revoked_sessions (id, until) VALUES (?, ?)",
                (session_id, until),
            )

    def session_revoked(self, session_id: str) -> bool:
        """Whether the dashboard session ``session_id`` was logged out."""
        with self._read() as db:
            row = db.execute("SELECT 1 FROM revoked_sessions WHERE id = ?", (session_id,))
            return row.fetchone() is not None

    def record_audit(
        self, token: str | None, method: str, path: str, service: str | None, status: int
    ) -> None:
        """Add one change asked of the API to the audit log (the oldest beyond
        :data:`AUDIT_KEPT` records are dropped)."""
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO audit (at, token, method, path, service, status)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (self._clock(), token, method, path, service, status),
            )
            newest = cursor.lastrowid or 0
            if newest > AUDIT_KEPT:
                db.execute("DELETE FROM audit WHERE id <= ?", (newest - AUDIT_KEPT,))

    def audit(self, *, service: str | None = None, limit: int = 100) -> list[AuditRecord]:
        """The newest ``limit`` audit records (of one service, if given), newest first."""
        query = "SELECT * FROM audit"
        args: tuple[object, ...] = ()
        if service is not None:
            query += " WHERE service = ?"
            args = (service,)
        with self._read() as db:
            rows = db.execute(query + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [
            AuditRecord(
                row["id"],
                row["at"],
                row["token"],
                row["method"],
                row["path"],
                row["service"],
                row["status"],
            )
            for row in rows
        ]

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
            f"{_SERVICE_SELECT} WHERE s.name = ?", (name,)
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
        return _service_record(self._require_service(db, name))

    def _touch(self, db: sqlite3.Connection, name: str) -> None:
        db.execute("UPDATE services SET updated_at = ? WHERE name = ?", (self._clock(), name))

    @staticmethod
    def _deployment_in(db: sqlite3.Connection, name: str, number: int) -> Deployment | None:
        row = db.execute(
            "SELECT * FROM deployments WHERE service = ? AND number = ?", (name, number)
        ).fetchone()
        return None if row is None else _deployment(row)

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
            return self._cipher.decrypt(sealed, _env_context(name, key))
        except WrongMasterKey:
            raise WrongMasterKey(
                f"cannot decrypt the secret {key} of service {name!r} with the master key "
                f"from {self._cipher.source}: it was encrypted with another key, or altered. "
                f"{_KEY_ADVICE}"
            ) from None

    # -- the master key --------------------------------------------------------------------

    @property
    def key_source(self) -> str:
        """Where the master key comes from (the key file, or the environment variable)."""
        return self._cipher.source

    @property
    def key_rotatable(self) -> bool:
        """Whether :meth:`rotate_key` can replace the key (it is kept in the key file)."""
        return self._cipher.key_file is not None

    def rotate_key(self) -> int:
        """Re-seal every secret under a new master key, then replace the key file.

        Every sealed value is covered: the services' secret variables, those of deploys in
        progress, and the passwords of git remotes. Returns how many were re-sealed. Only a
        key kept in the data dir's key file can be rotated: one given in
        ``$DPLOYR_MASTER_KEY`` is the operator's to change.
        """
        path = self._cipher.key_file
        if path is None:
            raise MasterKeyError(
                f"the master key comes from {self._cipher.source}, which dployr cannot "
                f"change: unset {KEY_ENV} to let dployr keep the key in the data dir"
            )
        new = secret_files.prepare_rotation(path)
        old = self._cipher
        marker = _key_marker(path)
        # (the rows, each with its sealed value and what it is bound to; how to update one)
        tables = (
            (
                "SELECT service, key, service AS owner, key AS bound, sealed FROM env"
                " WHERE sealed IS NOT NULL",
                "UPDATE env SET sealed = ? WHERE service = ? AND key = ?",
                _env_context,
            ),
            (
                "SELECT e.deployment, e.key, d.service AS owner, e.key AS bound, e.sealed"
                " FROM deployment_env e JOIN deployments d ON d.id = e.deployment"
                " WHERE e.sealed IS NOT NULL",
                "UPDATE deployment_env SET sealed = ? WHERE deployment = ? AND key = ?",
                _env_context,
            ),
            (
                "SELECT service, remote, service AS owner, remote AS bound, sealed"
                " FROM git_credentials",
                "UPDATE git_credentials SET sealed = ? WHERE service = ? AND remote = ?",
                _git_context,
            ),
        )
        count = 0
        connection = self._connection()
        # This one commit must survive a power cut: the key file changes right after it.
        connection.execute("PRAGMA synchronous = FULL")
        try:
            with self._write() as db:
                for select, update, context in tables:
                    for row in db.execute(select).fetchall():
                        bound = context(row["owner"], row["bound"])
                        plain = old.decrypt(row["sealed"], bound)
                        db.execute(update, (new.encrypt(plain, bound), row[0], row[1]))
                        count += 1
                # Which key the database is sealed under, for a store opened after a crash.
                db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (ROTATION_KEY, marker),
                )
        finally:
            connection.execute("PRAGMA synchronous = NORMAL")
        self._cipher = new  # what the database is sealed under now, whatever follows
        try:
            secret_files.finish_rotation(path)
        except OSError as error:
            raise StoreError(
                f"the secrets are sealed under the new key, but {path} could not be "
                f"replaced ({error.strerror}): it will be when dployr next starts"
            ) from None
        return count

    def _settle_rotation(self) -> None:
        """Finish or undo a key rotation a crash interrupted (see :meth:`rotate_key`).

        The rotation committed exactly when the database names the new key (the meta row
        written in the same transaction as the re-sealed values).
        """
        path = self._cipher.key_file
        if path is None:
            return
        waiting = secret_files.rotation_file(path)
        if not waiting.exists():
            return
        if self.get_meta(ROTATION_KEY) == _key_marker(path):
            secret_files.finish_rotation(path)
            new = Cipher.from_key_file(path)
            self._cipher = new
        else:
            waiting.unlink()  # never committed: the old key stays

    def _check_master_key(self) -> None:
        """Refuse a master key that does not open the secrets already stored (one of each
        kind: a variable, a deploy's variable, a git password)."""
        with self._read() as db:
            probes = [
                (row["sealed"], _env_context(row["owner"], row["key"]))
                for row in (
                    db.execute(
                        "SELECT service AS owner, key, sealed FROM env"
                        " WHERE sealed IS NOT NULL LIMIT 1"
                    ).fetchone(),
                    db.execute(
                        "SELECT d.service AS owner, e.key, e.sealed FROM deployment_env e"
                        " JOIN deployments d ON d.id = e.deployment"
                        " WHERE e.sealed IS NOT NULL LIMIT 1"
                    ).fetchone(),
                )
                if row is not None
            ]
            git = db.execute("SELECT service, remote, sealed FROM git_credentials LIMIT 1")
            row = git.fetchone()
            if row is not None:
                probes.append((row["sealed"], _git_context(row["service"], row["remote"])))
        for sealed, bound in probes:
            try:
                self._cipher.decrypt(sealed, bound)
            except WrongMasterKey:
                raise WrongMasterKey(
                    f"the master key from {self._cipher.source} does not decrypt the secrets "
                    f"stored in {self.path}: they were encrypted with another key. "
                    f"{_KEY_ADVICE}"
                ) from None


def _configure(db: sqlite3.Connection, path: Path) -> None:
    """Set the connection's pragmas (they are per connection, so on every open)."""
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


_KEY_ADVICE = (
    f"Set {KEY_ENV}, or restore the {KEY_FILE_NAME} file of the data dir, "
    "to the key the secrets were set with"
)


def _service_record(row: sqlite3.Row) -> ServiceRecord:
    return ServiceRecord(
        name=row["name"],
        settings=serde.loads(row["settings"], ServiceSettings),
        desired=DesiredState(row["desired"]),
        active_deployment=row["active_number"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _deployment(row: sqlite3.Row) -> Deployment:
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


def _env_context(name: str, key: str) -> bytes:
    """The associated data binding a secret to its service and key (neither holds NUL)."""
    return b"dployr env\x00" + name.encode() + b"\x00" + key.encode()


def _key_marker(path: Path) -> str:
    """A digest naming the key waiting beside ``path`` (``master.key.new``)."""
    text = secret_files.rotation_file(path).read_bytes().strip()
    return hashlib.sha256(b"dployr key\x00" + text).hexdigest()


def _git_context(name: str, remote: str) -> bytes:
    """The associated data binding a git password to its service and remote."""
    return b"dployr git\x00" + name.encode() + b"\x00" + remote.encode()


def _check_utf8(key: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidSetting(f"the value of {key} is not valid Unicode text") from None


def _check_token_name(name: object) -> None:
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= _MAX_TOKEN_NAME
        or name != name.strip()
        or not name.isprintable()
        or "/" in name
    ):
        raise InvalidTokenName(
            f"invalid API token name {name!r}: use 1 to {_MAX_TOKEN_NAME} printable "
            "characters but /, without leading or trailing spaces"
        )


def _token_record(row: sqlite3.Row) -> TokenRecord:
    return TokenRecord(
        row["name"],
        row["created_at"],
        Scope(row["scope"]),
        row["service"],
        row["expires_at"],
        row["last_used_at"],
    )


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()
