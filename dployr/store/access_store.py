"""The store as the gateway's ``Tokens`` (dployr/gateway/access.py): API tokens, logged-out
dashboard sessions and the audit log, failing with protocol errors.

The gateway never imports the store: the daemon hands it an :class:`AccessStore`, which
turns the store's errors into :class:`~dployr.protocol.errors.Error` values by
:data:`dployr.store.codes.ERROR_CODES`.
"""

from __future__ import annotations

from dployr.store.codes import protocol_errors
from dployr.store.store import Store
from dployr.tokens import AuditRecord, Scope, TokenRecord


class AccessStore:
    """The token and audit records of a :class:`Store` (see the module)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def authenticate(self, token: str, /) -> TokenRecord | None:
        with protocol_errors():
            return self.store.authenticate(token)

    def create_token(
        self,
        name: str,
        *,
        scope: Scope = Scope.ADMIN,
        service: str | None = None,
        expires_in: float | None = None,
    ) -> str:
        with protocol_errors():
            return self.store.create_token(
                name, scope=scope, service=service, expires_in=expires_in
            )

    def list_tokens(self) -> list[TokenRecord]:
        with protocol_errors():
            return self.store.list_tokens()

    def delete_token(self, name: str) -> None:
        with protocol_errors():
            self.store.delete_token(name)

    def revoke_session(self, session_id: str, until: float) -> None:
        with protocol_errors():
            self.store.revoke_session(session_id, until)

    def session_revoked(self, session_id: str) -> bool:
        with protocol_errors():
            return self.store.session_revoked(session_id)

    def record_audit(
        self, token: str | None, method: str, path: str, service: str | None, status: int
    ) -> None:
        with protocol_errors():
            self.store.record_audit(token, method, path, service, status)

    def audit(self, *, service: str | None = None, limit: int = 100) -> list[AuditRecord]:
        with protocol_errors():
            return self.store.audit(service=service, limit=limit)
