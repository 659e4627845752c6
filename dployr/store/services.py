"""The services table, their environment and their git credentials."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dployr import serde
from dployr.models import (
    DeploymentStatus,
    DesiredState,
    EnvVar,
    ServiceSettings,
    check_name,
)
from dployr.store.base import (
    KEY_ADVICE,
    SECRET_MASK,
    SERVICE_SELECT,
    StoreBase,
    git_context,
    service_record,
)
from dployr.store.errors import (
    ServiceExists,
    WrongMasterKey,
)
from dployr.store.records import ServiceRecord


class ServiceTables(StoreBase):
    """A service's row, its environment variables and its git passwords."""

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
        return None if row is None else service_record(row)

    def list_services(self) -> list[ServiceRecord]:
        """Every service, by name."""
        with self._read() as db:
            rows = db.execute(f"{SERVICE_SELECT} ORDER BY s.name").fetchall()
        return [service_record(row) for row in rows]

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
            sealed = self._cipher.encrypt(password, git_context(name, remote))
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
            password = self._cipher.decrypt(row["sealed"], git_context(name, row["remote"]))
        except WrongMasterKey:
            raise WrongMasterKey(
                f"cannot decrypt the git password of service {name!r} with the master key "
                f"from {self._cipher.source}: it was encrypted with another key, or altered. "
                f"{KEY_ADVICE}"
            ) from None
        return row["remote"], password
