"""Guards shared by every test."""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest

from tests.helpers import service_processes


@pytest.fixture(autouse=True)
def no_leftover_service_processes() -> Iterator[None]:
    """Fail a test that leaves a service's process (or its children) running behind it."""
    before = set(service_processes())
    yield
    leftovers = {pid: owner for pid, owner in service_processes().items() if pid not in before}
    for pid in leftovers:
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            continue
    assert not leftovers, f"the test left service processes running: {leftovers}"
