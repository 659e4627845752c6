"""What every route and feed shares: JSON responses, the error shape, status codes, tokens."""

from __future__ import annotations

import json
from typing import Any, Protocol

from quart import Response

from dployr import serde
from dployr.engine.errors import Conflict
from dployr.engine.proxy import PortInUse
from dployr.errors import DployrError, SpecError
from dployr.store.errors import ServiceExists, StoreError, UnknownService


class BadRequest(SpecError):
    """The request itself is malformed (bad JSON, a bad query parameter): HTTP 400."""


class UnknownInstance(SpecError):
    """No instance has that id or name: HTTP 404."""


MAX_BODY = 1 << 20
"""Bodies larger than this are refused with 413."""


class TokenCheck(Protocol):
    """Says whether an API token is valid (the store keeps only hashes)."""

    def __call__(self, token: str, /) -> bool: ...


def status_for(error: DployrError) -> tuple[int, str]:
    """The HTTP status and error code for a domain error."""
    if isinstance(error, BadRequest):
        return 400, "bad_request"
    if isinstance(error, UnknownService | UnknownInstance):
        return 404, "not_found"
    if isinstance(error, Conflict | PortInUse | ServiceExists):
        return 409, "conflict"
    if isinstance(error, StoreError):
        return 500, "store_error"
    if isinstance(error, SpecError):
        return 422, "invalid"
    return 400, "refused"


class EncodedJSON(bytes):
    """A JSON body already encoded (a route's cached answer): sent as it is."""


def encode_json(data: Any) -> EncodedJSON:
    """Plain data or a value as a JSON body."""
    text = json.dumps(serde.unstructure(data), ensure_ascii=False, separators=(",", ":"))
    return EncodedJSON(text.encode())


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response of plain data or a value (unstructured by the shared converter)."""
    body = data if isinstance(data, EncodedJSON) else encode_json(data)
    return Response(body, status=status, headers=headers, content_type="application/json")


def error_response(
    status: int, code: str, message: str, *, allow: list[str] | None = None
) -> Response:
    """The one error shape: ``{"error": {"code": ..., "message": ...}}``.

    A 401 says how to authenticate; a 405 lists the methods ``allow``ed (RFC 9110).
    """
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if allow is not None:
        headers["Allow"] = ", ".join(sorted(allow))
    return json_response({"error": {"code": code, "message": message}}, status, headers or None)


def bearer_token(headers: Any, args: Any) -> str | None:
    """A request's token: ``Authorization: Bearer``, else ``?token=`` (for browsers)."""
    header = headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return args.get("token") or None
