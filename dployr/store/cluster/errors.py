"""Errors the control plane's cluster state raises on purpose, each with a message a user can
act on. They are store errors (or, for a refused value, spec errors), mapped by the store's
table of error codes (:data:`dployr.store.codes.ERROR_CODES`): exists → conflict, unknown
→ not_found, a refused name, value or join token → invalid (the agents' door answers 401),
a lost leadership → unavailable.
"""

from __future__ import annotations

from dployr.errors import SpecError
from dployr.store.errors import StoreError


class InstanceExists(StoreError):
    """An instance with that name already exists (``local`` always does)."""


class UnknownInstance(StoreError):
    """No instance has that name."""


class InvalidJoinToken(StoreError):
    """A join token that is unknown, already used or expired."""


class InvalidInstanceName(SpecError):
    """An instance name that dployr refuses."""


class InvalidClusterValue(SpecError):
    """A value the cluster state refuses: a join token's lifetime, a record that is not JSON."""


class LeadershipLost(StoreError):
    """This control plane was the leader and may not be any more: its database connection
    broke."""
