"""The one error hierarchy of dployr.

Every error a user can see is a :class:`DployrError` whose message says what went wrong
and, where possible, what to do about it. Code never swallows these to keep going.
"""

from __future__ import annotations


class DployrError(Exception):
    """Base of every error dployr raises on purpose; its message is meant for a user."""


class SpecError(DployrError, ValueError):
    """A value (a child spec, a setting, a name) was invalid when it was built."""


class ActorError(DployrError):
    """Talking to an actor failed."""


class ActorDead(ActorError):
    """The actor stopped (or was never running), so it cannot take or answer a message."""


class AskTimeout(ActorError):
    """The actor did not answer a request within its timeout."""


class MailboxFull(ActorError):
    """``tell_nowait`` found the actor's bounded mailbox full."""


class SupervisorError(DployrError):
    """Base of errors raised by a supervisor."""


class StartError(SupervisorError):
    """A child failed to start, so the supervisor (or the operation) could not proceed."""


class RestartIntensityExceeded(SupervisorError):
    """A supervisor saw more restarts than its intensity allows and gave up.

    It has already stopped its children in reverse order; its parent decides what next.
    """


class UnknownChild(SupervisorError, KeyError):
    """No child with that id is known to the supervisor."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateChild(SupervisorError):
    """A child with that id already exists under the supervisor."""
