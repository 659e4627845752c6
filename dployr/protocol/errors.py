"""The one error shape of the protocol: a code a program can act on, and a message for a user.

An instance answers a request it cannot carry out with an :class:`Error`; the engine's own
exceptions are turned into one at the instance's handle, so that whoever asks (the gateway,
the CLI, a remote instance later) needs to know five codes, not the engine's classes. The
gateway turns the code into an HTTP status with one table (dployr/gateway/responses.py).
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from dployr.errors import DployrError

ErrorCode = Literal["not_found", "conflict", "invalid", "unavailable", "internal"]
"""``not_found``: no such service, deployment, token or instance. ``conflict``: not in the
current state (a deploy is running, the port is taken). ``invalid``: the request itself is
refused (a bad name, setting or remote). ``unavailable``: the instance cannot do it now (a
part of it is not running, the disk is full); trying later may work. ``internal``: anything
else, a fault of dployr's own."""

ERROR_CODES: Final[tuple[ErrorCode, ...]] = get_args(ErrorCode)


class Error(DployrError):
    """A request failed: its ``code`` (one of :data:`ERROR_CODES`) and one line saying why."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"not an error code: {code!r}")
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Error):
            return NotImplemented
        return (self.code, self.message) == (other.code, other.message)

    def __hash__(self) -> int:
        return hash((self.code, self.message))

    def __repr__(self) -> str:
        return f"Error({self.code!r}, {self.message!r})"
