"""The master key: where it comes from, and rotating it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from dployr.store import secrets as secret_files
from dployr.store.base import (
    KEY_ADVICE,
    ROTATION_KEY,
    StoreBase,
    env_context,
    git_context,
)
from dployr.store.errors import (
    MasterKeyError,
    StoreError,
    WrongMasterKey,
)
from dployr.store.secrets import KEY_ENV, Cipher


class KeyRing(StoreBase):
    """The key secrets are sealed under: checked at open, rotatable."""

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
                env_context,
            ),
            (
                "SELECT e.deployment, e.key, d.service AS owner, e.key AS bound, e.sealed"
                " FROM deployment_env e JOIN deployments d ON d.id = e.deployment"
                " WHERE e.sealed IS NOT NULL",
                "UPDATE deployment_env SET sealed = ? WHERE deployment = ? AND key = ?",
                env_context,
            ),
            (
                "SELECT service, remote, service AS owner, remote AS bound, sealed"
                " FROM git_credentials",
                "UPDATE git_credentials SET sealed = ? WHERE service = ? AND remote = ?",
                git_context,
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
                (row["sealed"], env_context(row["owner"], row["key"]))
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
                probes.append((row["sealed"], git_context(row["service"], row["remote"])))
        for sealed, bound in probes:
            try:
                self._cipher.decrypt(sealed, bound)
            except WrongMasterKey:
                raise WrongMasterKey(
                    f"the master key from {self._cipher.source} does not decrypt the secrets "
                    f"stored in {self.path}: they were encrypted with another key. "
                    f"{KEY_ADVICE}"
                ) from None


def _key_marker(path: Path) -> str:
    """A digest naming the key waiting beside ``path`` (``master.key.new``)."""
    text = secret_files.rotation_file(path).read_bytes().strip()
    return hashlib.sha256(b"dployr key\x00" + text).hexdigest()
