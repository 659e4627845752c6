"""Deployments and the process groups their releases run as."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from dployr import serde
from dployr.models import (
    Deployment,
    DeploymentStatus,
    ServiceSettings,
)
from dployr.store.base import (
    UNFINISHED,
    UNSET,
    StoreBase,
    Unset,
    deployment_from_row,
)
from dployr.store.errors import (
    DeploymentFinished,
    UnknownDeployment,
)
from dployr.store.records import ProcessRecord


class DeploymentTables(StoreBase):
    """Each deploy's record, with the settings and environment it ran with; the processes
    started, so that a daemon killed with them can find them."""

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
        status: DeploymentStatus | Unset = UNSET,
        revision: str | Unset | None = UNSET,
        exit_code: int | Unset | None = UNSET,
        error: str | Unset | None = UNSET,
        output_tail: Sequence[str] | Unset = UNSET,
        image: str | Unset | None = UNSET,
    ) -> Deployment:
        """Change the given fields of a deployment and return it as it is now.

        ``finished_at`` is set (to now) when the status becomes a finished one, and the
        variables the deploy brought are then forgotten (they joined the service's
        environment when it was activated, or never will). A finished
        deployment's status never changes again (:class:`DeploymentFinished`); its other
        fields may still be filled in.
        """
        changes: dict[str, Any] = {}
        if not isinstance(revision, Unset):
            changes["revision"] = revision
        if not isinstance(image, Unset):
            changes["image"] = image
        if not isinstance(exit_code, Unset):
            changes["exit_code"] = exit_code
        if not isinstance(error, Unset):
            changes["error"] = error
        if not isinstance(output_tail, Unset):
            if isinstance(output_tail, str):
                raise TypeError("output_tail is a sequence of lines, not one string")
            changes["output_tail"] = tuple(output_tail)
        with self._write() as db:
            current = self._deployment_in(db, name, number)
            if current is None:
                raise UnknownDeployment(f"{name!r} has no deployment {number}")
            new_status = None if isinstance(status, Unset) else DeploymentStatus(status)
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
        return [deployment_from_row(row) for row in rows]

    def fail_interrupted_deployments(self, reason: str) -> list[Deployment]:
        """Mark every unfinished deployment ``failed`` with ``reason``; return them, by id.

        Called when the daemon starts: a deployment still unfinished then was interrupted by
        the previous daemon's end.
        """
        now = self._clock()
        with self._write() as db:
            rows = db.execute(
                "UPDATE deployments SET status = ?, error = ?, finished_at = ?"
                f" WHERE status IN ({', '.join('?' * len(UNFINISHED))})"
                " RETURNING *",
                (DeploymentStatus.FAILED.value, reason, now, *UNFINISHED),
            ).fetchall()
            db.executemany(
                "DELETE FROM deployment_env WHERE deployment = ?", [(row["id"],) for row in rows]
            )
        return sorted((deployment_from_row(row) for row in rows), key=lambda d: (d.service, d.id))

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
