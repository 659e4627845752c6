"""Who may do what through the gateway: token scopes, sign-in throttling, the audit log.

Every request under ``/api`` (and ``/metrics``) is made by a *caller*: the API token of
its ``Authorization: Bearer`` header, or the token a dashboard session was opened with.
:func:`refusal` says whether the caller's scope allows the request; the app answers 403
with that one line if not. Every change asked of the API (any method but GET, HEAD and
OPTIONS) by a known caller is then written to the audit log with the answer's status.

The token routes (``/tokens``) and the audit log (``/audit``) are admin-only routes
declared here in the same :class:`~dployr.gateway.api.Route` table form as the REST API,
so that they are registered and documented like every other route.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import attrs
from quart import current_app, request

from dployr.errors import SpecError
from dployr.gateway.api import PREFIX, Param, Route, _int_arg, json_body
from dployr.models import NAME_PATTERN
from dployr.protocol.handle import InstanceHandle
from dployr.tokens import AuditRecord, Scope, TokenRecord

log = logging.getLogger("dployr.gateway.access")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing: what a read token may use, and what is not audited."""

SERVICE_RULE = PREFIX + "/services/<name>"
"""Routes under this rule act on the service ``name``."""
ADMIN_RULES = (PREFIX + "/tokens", PREFIX + "/audit", PREFIX + "/secrets", PREFIX + "/images")
"""Routes under these rules are for admin tokens only."""
ADMIN_CHANGES = (PREFIX + "/instances",)
"""Routes under these rules take changes from admin tokens only (adding and removing a
cluster's instances); reading them is for any token not limited to one service."""
EVERY_SERVICE_RULES = (
    "/metrics",
    PREFIX + "/events",
    PREFIX + "/instances",
    PREFIX + "/instances/<instance>",
)
"""Routes that show every service at once: not for a token limited to one service."""


class Tokens(Protocol):
    """What the gateway needs of the store: API tokens, logged-out sessions, the audit log."""

    def authenticate(self, token: str, /) -> TokenRecord | None: ...

    def create_token(
        self,
        name: str,
        *,
        scope: Scope = ...,
        service: str | None = ...,
        expires_in: float | None = ...,
    ) -> str: ...

    def list_tokens(self) -> list[TokenRecord]: ...

    def delete_token(self, name: str) -> None: ...

    def revoke_session(self, session_id: str, until: float) -> None: ...

    def session_revoked(self, session_id: str) -> bool: ...

    def record_audit(
        self, token: str | None, method: str, path: str, service: str | None, status: int
    ) -> None: ...

    def audit(self, *, service: str | None = ..., limit: int = ...) -> list[AuditRecord]: ...


def service_of(rule: str | None, args: dict[str, Any] | None) -> str | None:
    """The service a request acts on, from its URL rule and arguments."""
    if rule is None or args is None or not rule.startswith(SERVICE_RULE):
        return None
    rest = rule[len(SERVICE_RULE) :]
    if rest and not rest.startswith("/"):
        return None
    name = args.get("name")
    return name if isinstance(name, str) else None


def refusal(caller: TokenRecord, method: str, rule: str | None, service: str | None) -> str | None:
    """Why ``caller`` may not make this request (one line), or None if it may.

    ``rule`` is the matched URL rule (None for a path no route serves: that answers 404 or
    405 whoever asks), ``service`` the service the request acts on.
    """
    if rule is None:
        return None
    scope = caller.scope.value
    if caller.scope is not Scope.ADMIN and (
        rule.startswith(ADMIN_RULES) or (rule.startswith(ADMIN_CHANGES) and method != "GET")
    ):
        return f"this needs an admin token; the token {caller.name!r} has the scope {scope}"
    if caller.scope is Scope.READ and method not in SAFE_METHODS:
        return f"the token {caller.name!r} can only read (scope read): it changes nothing"
    if caller.scope is Scope.DEPLOY and method == "DELETE" and rule == SERVICE_RULE:
        return f"deleting a service needs an admin token; the token {caller.name!r} can deploy"
    if caller.service is not None:
        if rule in EVERY_SERVICE_RULES or rule.startswith(ADMIN_RULES):
            return (
                f"the token {caller.name!r} is limited to the service {caller.service!r}, "
                "and this shows every service"
            )
        if service is not None and service != caller.service:
            return f"the token {caller.name!r} is limited to the service {caller.service!r}"
    return None


# -- sign-in throttling ------------------------------------------------------------------


@attrs.define
class _Failures:
    count: int
    last: float
    locked_until: float


class LoginThrottle:
    """Failed dashboard sign-ins per client address, and how long each must wait.

    The first :attr:`free` failures in a row cost nothing; each one after locks the address
    out for twice as long as the one before (1 s, 2 s, 4 s, ... up to :attr:`longest`). A
    sign-in during a lock-out is refused without looking at its token. A success, or
    :attr:`forget_after` seconds without a failure, starts the address afresh. At most
    :attr:`kept` addresses are remembered (the least recent go first).
    """

    def __init__(
        self,
        *,
        free: int = 5,
        longest: float = 300.0,
        forget_after: float = 900.0,
        kept: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = free
        self.longest = longest
        self.forget_after = forget_after
        self.kept = kept
        self._clock = clock
        self._failures: collections.OrderedDict[str, _Failures] = collections.OrderedDict()

    def wait(self, address: str) -> float:
        """Seconds before ``address`` may try to sign in again (0: now)."""
        failures = self._current(address)
        if failures is None:
            return 0.0
        return max(0.0, failures.locked_until - self._clock())

    def failed(self, address: str) -> tuple[int, float]:
        """Count a failure; return the failures in a row and the lock-out it starts (s)."""
        now = self._clock()
        failures = self._current(address) or _Failures(0, now, now)
        failures.count += 1
        failures.last = now
        lock = 0.0
        if failures.count > self.free:
            lock = min(self.longest, 2.0 ** (failures.count - self.free - 1))
            failures.locked_until = now + lock
        self._failures[address] = failures
        self._failures.move_to_end(address)
        while len(self._failures) > self.kept:
            self._failures.popitem(last=False)
        return failures.count, lock

    def succeeded(self, address: str) -> None:
        """Forget the address's failures."""
        self._failures.pop(address, None)

    def _current(self, address: str) -> _Failures | None:
        failures = self._failures.get(address)
        if failures is not None and self._clock() - failures.last >= self.forget_after:
            del self._failures[address]
            return None
        return failures


# -- the token and audit routes -------------------------------------------------------------


def _tokens() -> Tokens:
    tokens: Tokens = current_app.extensions["dployr.tokens"]
    return tokens


def _listed(record: TokenRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "scope": record.scope.value,
        "service": record.service,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "last_used_at": record.last_used_at,
    }


_TOKEN_FIELDS = frozenset({"name", "scope", "service", "expires_in"})


async def create_token(_: InstanceHandle, __: dict[str, str]) -> tuple[Any, int]:
    data = await json_body(request)
    if not isinstance(data, dict):
        raise SpecError('the body must be {"name": ..., "scope": "read" | "deploy" | "admin"}')
    unknown = set(data) - _TOKEN_FIELDS
    if unknown:
        raise SpecError(f"unknown fields: {', '.join(sorted(unknown))}")
    name, scope_text = data.get("name"), data.get("scope")
    service, expires_in = data.get("service"), data.get("expires_in")
    if not isinstance(name, str):
        raise SpecError("name must be a string")
    try:
        scope = Scope(scope_text)
    except ValueError:
        raise SpecError(f"scope must be read, deploy or admin, not {scope_text!r}") from None
    if service is not None and not isinstance(service, str):
        raise SpecError("service must be a service's name")
    if expires_in is not None and (
        isinstance(expires_in, bool) or not isinstance(expires_in, int | float)
    ):
        raise SpecError("expires_in must be a number of seconds")
    tokens = _tokens()
    token = tokens.create_token(name, scope=scope, service=service, expires_in=expires_in)
    record = next(t for t in tokens.list_tokens() if t.name == name)
    return {**_listed(record), "token": token}, 201


async def list_tokens(_: InstanceHandle, __: dict[str, str]) -> tuple[Any, int]:
    return [_listed(record) for record in _tokens().list_tokens()], 200


async def revoke_token(_: InstanceHandle, args: dict[str, str]) -> tuple[Any, int]:
    _tokens().delete_token(args["token"])
    return {"name": args["token"], "revoked": True}, 200


async def read_audit(_: InstanceHandle, __: dict[str, str]) -> tuple[Any, int]:
    service = request.args.get("service") or None
    limit = min(_int_arg("limit", minimum=1) or 100, 10_000)
    records = _tokens().audit(service=service, limit=limit)
    return [attrs.asdict(record) for record in records], 200


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/tokens",
        "Create an API token (admin only): the answer is the only time it is shown",
        create_token,
        body="TokenCreate",
        response="NewToken",
        status=201,
    ),
    Route("GET", "/tokens", "List API tokens (admin only)", list_tokens, response="TokenList"),
    Route(
        "DELETE",
        "/tokens/{token}",
        "Revoke an API token at once (admin only)",
        revoke_token,
        response="Revoked",
    ),
    Route(
        "GET",
        "/audit",
        "The changes made through the API, newest first (admin only)",
        read_audit,
        response="AuditList",
        query=(
            Param("service", "string", "only the changes to this service"),
            Param("limit", "integer", "at most this many (default 100; 10000 at most are sent)"),
        ),
    ),
)
"""The admin routes, in the REST table's form."""


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_SCOPE = {"type": "string", "enum": ["read", "deploy", "admin"]}
_TOKEN = {
    "name": {"type": "string"},
    "scope": _SCOPE,
    "service": _or_null({"type": "string"}),
    "created_at": {"type": "number"},
    "expires_at": _or_null({"type": "number"}),
    "last_used_at": _or_null({"type": "number"}),
}
_TOKEN_NAME_PATTERN = r"^[^/\s\x00-\x1f\x7f](?:[^/\x00-\x1f\x7f]*[^/\s\x00-\x1f\x7f])?$"
"""Printable, no ``/``, no leading or trailing space (what the store accepts)."""

SCHEMAS: dict[str, Any] = {
    "TokenCreate": {
        "type": "object",
        "properties": {
            "name": {
                "type": "string",
                "minLength": 1,
                "maxLength": 100,
                "pattern": _TOKEN_NAME_PATTERN,
            },
            "scope": _SCOPE,
            "service": _or_null({"type": "string", "pattern": f"^{NAME_PATTERN.pattern}$"}),
            "expires_in": _or_null(
                {
                    "type": "number",
                    "minimum": 1,
                    "maximum": 10 * 365 * 86400,
                    "description": "seconds until the token stops working",
                }
            ),
        },
        "required": ["name", "scope"],
        "additionalProperties": False,
    },
    "Token": {"type": "object", "properties": _TOKEN},
    "NewToken": {"type": "object", "properties": {**_TOKEN, "token": {"type": "string"}}},
    "TokenList": {"type": "array", "items": {"$ref": "#/components/schemas/Token"}},
    "Revoked": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "revoked": {"type": "boolean"}},
    },
    "AuditRecord": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "at": {"type": "number"},
            "token": _or_null({"type": "string"}),
            "method": {"type": "string"},
            "path": {"type": "string"},
            "service": _or_null({"type": "string"}),
            "status": {"type": "integer"},
        },
    },
    "AuditList": {"type": "array", "items": {"$ref": "#/components/schemas/AuditRecord"}},
}
"""The schemas of the admin routes, for the OpenAPI document."""
