"""Exit reasons: why an actor or a child stopped, as plain values.

``Normal`` means the child finished its work, ``Shutdown`` means its supervisor (or the
user) stopped it, ``Crashed`` means anything else: an exception, or for OS processes an
exit code or a signal. Pure code: no trio import.
"""

from __future__ import annotations

import signal as _signal
from typing import Final

import attrs


@attrs.frozen
class Normal:
    """The child returned on its own."""

    @property
    def abnormal(self) -> bool:
        """Whether a ``transient`` child would be restarted after this exit."""
        return False

    def describe(self) -> str:
        """A short sentence for logs and status lines."""
        return "exited normally"


@attrs.frozen
class Shutdown:
    """The child was stopped on purpose (by its supervisor or a user)."""

    cause: str = "shutdown"

    @property
    def abnormal(self) -> bool:
        """Whether a ``transient`` child would be restarted after this exit."""
        return False

    def describe(self) -> str:
        """A short sentence for logs and status lines."""
        return "stopped" if self.cause == "shutdown" else f"stopped ({self.cause})"


@attrs.frozen
class Crashed:
    """The child failed: with an exception, or (an OS process) an exit code or signal."""

    exception: BaseException | None = attrs.field(default=None, eq=False)
    exit_code: int | None = None
    signal: int | None = None
    message: str = ""

    @property
    def abnormal(self) -> bool:
        """Whether a ``transient`` child would be restarted after this exit."""
        return True

    @classmethod
    def from_exception(cls, exc: BaseException) -> Crashed:
        """The reason for a child that raised ``exc``."""
        text = str(exc)
        return cls(exception=exc, message=f"{type(exc).__name__}: {text}" if text else repr(exc))

    @classmethod
    def from_returncode(cls, returncode: int) -> Crashed:
        """The reason for an OS process; a negative return code means a signal."""
        if returncode < 0:
            return cls(signal=-returncode)
        return cls(exit_code=returncode)

    def describe(self) -> str:
        """A short sentence for logs and status lines: "exited with code 1" and such."""
        if self.signal is not None:
            try:
                name = _signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"killed by {name}"
        if self.exit_code is not None:
            return f"exited with code {self.exit_code}"
        return f"crashed: {self.message}" if self.message else "crashed"


ExitReason = Normal | Shutdown | Crashed

NORMAL: Final = Normal()
SHUTDOWN: Final = Shutdown()


def from_returncode(returncode: int) -> ExitReason:
    """Map an OS process's return code to a reason: 0 is normal, anything else a crash."""
    return NORMAL if returncode == 0 else Crashed.from_returncode(returncode)
