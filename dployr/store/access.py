"""API tokens, dashboard logouts and the audit log."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import sqlite3

import attrs

from dployr.models import (
    check_name,
)
from dployr.store.base import (
    AUDIT_KEPT,
    LAST_USED_STEP,
    MAX_TOKEN_LIFETIME,
    MAX_TOKEN_NAME,
    TOKEN_BYTES,
    TOKEN_PREFIX,
    StoreBase,
)
from dployr.store.errors import (
    InvalidToken,
    InvalidTokenName,
    StoreError,
    TokenExists,
    UnknownToken,
)
from dployr.store.records import AuditRecord, Scope, TokenRecord


class AccessTables(StoreBase):
    """Who may use the API (tokens, as digests), sessions ended early, and what was done."""

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
            if not 1 <= expires_in <= MAX_TOKEN_LIFETIME:
                raise InvalidToken("a token's lifetime must be from 1 second to 10 years")
            expires_at = now + expires_in
        token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
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
        if use and (record.last_used_at is None or now - record.last_used_at >= LAST_USED_STEP):
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


def _check_token_name(name: object) -> None:
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= MAX_TOKEN_NAME
        or name != name.strip()
        or not name.isprintable()
        or "/" in name
    ):
        raise InvalidTokenName(
            f"invalid API token name {name!r}: use 1 to {MAX_TOKEN_NAME} printable "
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
