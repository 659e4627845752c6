"""How soon the readiness wait sees a new release's port open."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from dployr.engine.release import ReleaseSpec
from dployr.engine.service.core import LiveRelease
from dployr.engine.service.readiness import LISTEN_POLL_FIRST, _wait_listening
from tests.cli.conftest import free_port


async def _wait_opened_at(delay: float) -> float:
    """Open a port ``delay`` seconds from now; how long the readiness wait took to see it."""
    port = free_port()
    spec = ReleaseSpec("web", 1, "", Path("/"), {}, port, 1.0)
    deployment: Any = None  # (the wait reads only the release's pid and changes)
    live = LiveRelease(spec, deployment)
    listener = trio.socket.socket()
    with listener:
        await listener.bind(("127.0.0.1", port))

        async def open_later() -> None:
            await trio.sleep(delay)
            listener.listen()

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(open_later)
            await _wait_listening(live, spec)
        return trio.current_time() - start


async def test_a_port_that_opens_after_a_second_is_seen_within_one_poll_step(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A container on a loaded machine listens this late: it is seen at once, not at the
    # next step of a backoff.
    del autojump_clock
    took = await _wait_opened_at(1.25)
    assert 1.25 <= took <= 1.25 + LISTEN_POLL_FIRST + 1e-6, took
