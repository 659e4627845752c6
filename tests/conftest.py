"""Guards shared by every test."""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest
from hypothesis import settings

from tests.helpers import service_processes

# Property tests are judged on what they find, not on how fast one example ran: on a loaded
# 2-core machine an example can take far longer than Hypothesis's 200 ms default deadline.
settings.register_profile("dployr", deadline=None)
settings.load_profile("dployr")


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
