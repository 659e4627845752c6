"""What every route and feed shares: JSON responses, the error shape, status codes, tokens."""

from __future__ import annotations

import json
from typing import Any, Protocol

from quart import Response

from dployr.errors import DployrError, SpecError
from dployr.protocol import codec
from dployr.protocol.errors import Error
from dployr.tokens import TokenRecord


class BadRequest(SpecError):
    """The request itself is malformed (bad JSON, a bad query parameter): HTTP 400."""


MAX_BODY = 1 << 20
"""Bodies larger than this are refused with 413."""


class TokenCheck(Protocol):
    """The API token a token is (the store keeps only hashes), or None if it is not one."""

    def __call__(self, token: str, /) -> TokenRecord | None: ...


STATUSES: dict[str, int] = {
    "bad_request": 400,
    "not_found": 404,
    "conflict": 409,
    "invalid": 422,
    "internal": 500,
    "unavailable": 503,
}
"""The one table from an error code to its HTTP status: the protocol's five codes, and
``bad_request`` for a request the gateway cannot read (malformed JSON, a bad parameter)."""


def error_of(error: Exception) -> Error:
    """The protocol error an exception answers with: a value the gateway refused itself
    (a SpecError) is ``invalid``; any other error that is no protocol Error is ``internal``
    (a DployrError keeps its message, meant for a user; another shows only its type)."""
    if isinstance(error, Error):
        return error
    message = " ".join(str(error).split())
    if isinstance(error, SpecError):
        return Error("invalid", message)
    if isinstance(error, DployrError):
        return Error("internal", message)
    return Error("internal", f"internal error: {type(error).__name__}")


def status_for(error: Exception) -> tuple[int, str]:
    """The HTTP status and error code an exception answers with (:data:`STATUSES`)."""
    if isinstance(error, BadRequest):
        return STATUSES["bad_request"], "bad_request"
    code = error_of(error).code
    return STATUSES[code], code


class EncodedJSON(bytes):
    """A JSON body already encoded (a route's cached answer): sent as it is."""


def encode_json(data: Any) -> EncodedJSON:
    """Plain data or a value as a JSON body."""
    text = json.dumps(codec.unstructure(data), ensure_ascii=False, separators=(",", ":"))
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


def bearer_token(headers: Any, args: Any = None) -> str | None:
    """A request's token: ``Authorization: Bearer``, else ``?token=`` from ``args``.

    Pass ``args`` for WebSocket handshakes only: a browser cannot set their headers. A
    REST request's token is its header's, so that no token sits in a URL (a page's
    history, a proxy's log, a redirect).
    """
    header = headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    if args is None:
        return None
    return args.get("token") or None
