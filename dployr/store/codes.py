"""Which error of the store is which protocol error code: one table.

The store's errors reach users through three doors, each turning them into a
:class:`~dployr.protocol.errors.Error` by this table: the instance's handle (after its
own, the engine's, errors: :data:`dployr.engine.handle.ERROR_CODES`), the gateway's
tokens (:class:`~dployr.store.access_store.AccessStore`) and the cluster's router and hub
(instances, join tokens, placement: :mod:`dployr.cluster`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from dployr.errors import DployrError, SpecError
from dployr.protocol.errors import Error, ErrorCode
from dployr.store.cluster.errors import (
    InstanceExists,
    InvalidJoinToken,
    LeadershipLost,
    UnknownInstance,
)
from dployr.store.errors import (
    DeploymentFinished,
    DiskFull,
    ServiceExists,
    TokenExists,
    UnknownDeployment,
    UnknownService,
    UnknownToken,
)

ERROR_CODES: tuple[tuple[tuple[type[BaseException], ...], ErrorCode], ...] = (
    ((UnknownService, UnknownDeployment, UnknownToken, UnknownInstance), "not_found"),
    ((ServiceExists, TokenExists, DeploymentFinished, InstanceExists), "conflict"),
    ((SpecError, InvalidJoinToken), "invalid"),
    ((DiskFull, LeadershipLost), "unavailable"),
)
"""Which store error is which code, in order (the first that matches wins); any other is
``internal``."""


@contextlib.contextmanager
def protocol_errors() -> Iterator[None]:
    """Raise the store's errors as protocol errors (the cause kept); an Error goes on as
    it is."""
    try:
        yield
    except Error:
        raise
    except DployrError as error:
        found = (code for classes, code in ERROR_CODES if isinstance(error, classes))
        raise Error(next(found, "internal"), " ".join(str(error).split())) from error
