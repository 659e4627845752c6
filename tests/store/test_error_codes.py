"""The store's errors, the cluster state's among them, map to protocol codes by one table,
used by the instance's handle, the gateway's tokens and the cluster's router and hub."""

from __future__ import annotations

import pytest

from dployr.engine.handle import error_of
from dployr.errors import DployrError
from dployr.protocol.errors import Error
from dployr.store import codes
from dployr.store.cluster import (
    InstanceExists,
    InvalidInstanceName,
    InvalidJoinToken,
    LeadershipLost,
    UnknownInstance,
)
from dployr.store.errors import DiskFull, UnknownService

CASES = [
    (InstanceExists("an instance named 'east' already exists"), "conflict"),
    (UnknownInstance("no instance named 'east'"), "not_found"),
    (InvalidJoinToken("the join token of instance 'east' was already used"), "invalid"),
    (InvalidInstanceName("invalid instance name 'East'"), "invalid"),
    (LeadershipLost("the database connection broke"), "unavailable"),
    (DiskFull("the disk is full"), "unavailable"),
    (UnknownService("no service named 'web'"), "not_found"),
    (DployrError("something else"), "internal"),
]


@pytest.mark.parametrize(("error", "code"), CASES)
def test_a_store_error_becomes_its_code_through_the_one_table(
    error: DployrError, code: str
) -> None:
    with pytest.raises(Error) as raised, codes.protocol_errors():
        raise error
    assert (raised.value.code, raised.value.message) == (code, str(error))
    assert raised.value.__cause__ is error
    # The instance's handle (and so an agent's answers) maps them the same way.
    assert error_of(error).code == code


def test_a_protocol_error_goes_through_as_it_is() -> None:
    away = Error("unavailable", "instance east is away (never seen)")
    with pytest.raises(Error) as raised, codes.protocol_errors():
        raise away
    assert raised.value is away
