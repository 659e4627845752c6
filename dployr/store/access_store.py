"""The store as the gateway's ``Tokens`` (dployr/gateway/access.py): API tokens, logged-out
dashboard sessions and the audit log, failing with protocol errors.

The gateway never imports the store: the daemon hands it an :class:`AccessStore`, which
turns the store's errors into :class:`~dployr.protocol.errors.Error` values by
:data:`ERROR_CODES`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from dployr.errors import DployrError, SpecError
from dployr.protocol.errors import Error, ErrorCode
from dployr.store.errors import DiskFull, TokenExists, UnknownToken
from dployr.store.store import Store
from dployr.tokens import AuditRecord, Scope, TokenRecord

ERROR_CODES: tuple[tuple[type[DployrError], ErrorCode], ...] = (
    (UnknownToken, "not_found"),
    (TokenExists, "conflict"),
    (SpecError, "invalid"),
    (DiskFull, "unavailable"),
)
"""Which store error is which code (the first that matches wins); others are ``internal``."""


@contextlib.contextmanager
def _protocol_errors() -> Iterator[None]:
    try:
        yield
    except DployrError as error:
        found = (c for cls, c in ERROR_CODES if isinstance(error, cls))
        code: ErrorCode = next(found, "internal")
        raise Error(code, " ".join(str(error).split())) from error


class AccessStore:
    """The token and audit records of a :class:`Store` (see the module)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def authenticate(self, token: str, /) -> TokenRecord | None:
        with _protocol_errors():
            return self.store.authenticate(token)

    def create_token(
        self,
        name: str,
        *,
        scope: Scope = Scope.ADMIN,
        service: str | None = None,
        expires_in: float | None = None,
    ) -> str:
        with _protocol_errors():
            return self.store.create_token(
                name, scope=scope, service=service, expires_in=expires_in
            )

    def list_tokens(self) -> list[TokenRecord]:
        with _protocol_errors():
            return self.store.list_tokens()

    def delete_token(self, name: str) -> None:
        with _protocol_errors():
            self.store.delete_token(name)

    def revoke_session(self, session_id: str, until: float) -> None:
        with _protocol_errors():
            self.store.revoke_session(session_id, until)

    def session_revoked(self, session_id: str) -> bool:
        with _protocol_errors():
            return self.store.session_revoked(session_id)

    def record_audit(
        self, token: str | None, method: str, path: str, service: str | None, status: int
    ) -> None:
        with _protocol_errors():
            self.store.record_audit(token, method, path, service, status)

    def audit(self, *, service: str | None = None, limit: int = 100) -> list[AuditRecord]:
        with _protocol_errors():
            return self.store.audit(service=service, limit=limit)
