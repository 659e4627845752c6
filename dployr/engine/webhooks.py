"""The webhook actor: health changes POSTed to the URLs services configured.

Deliveries never block the probe that caused them: a service hands a delivery over with
``tell_nowait`` (a full mailbox drops it, and says so in the service's history), and each
delivery is retried with backoff in a task of its own, a bounded number at a time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import attrs
import trio

from dployr.models import Health
from dployr.supervision import Actor, ActorRef, ChildContext

ATTEMPTS = 5
FIRST_RETRY = 1.0
TIMEOUT = 5.0
CONCURRENT = 16


@attrs.frozen
class Delivery:
    """One JSON body for one URL, on behalf of a service."""

    service: str
    url: str
    body: bytes


class Webhooks(Actor[Delivery]):
    """Delivers webhook bodies with retries; ``on_failure(service, text)`` reports give-ups."""

    def __init__(self, on_failure: Callable[[str, str], None]) -> None:
        super().__init__("webhooks", mailbox_size=256)
        self._on_failure = on_failure
        self._limit = trio.CapacityLimiter(CONCURRENT)
        self._nursery: trio.Nursery | None = None

    async def run(
        self,
        ctx: ChildContext | None = None,
        *,
        task_status: trio.TaskStatus[ActorRef[Delivery]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve deliveries until stopped."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await super().run(ctx, task_status=task_status)

    async def handle(self, message: Delivery) -> None:
        """Start delivering ``message`` in the background (bounded), and return at once."""
        assert self._nursery is not None
        self._nursery.start_soon(self._deliver, message)

    async def _deliver(self, delivery: Delivery) -> None:
        # Imported at the first delivery: most daemons never send one, and httpx with its
        # dependencies weighs fourteen megabytes.
        import httpx

        async with self._limit, httpx.AsyncClient(timeout=TIMEOUT) as client:
            delay = FIRST_RETRY
            problem = ""
            for _attempt in range(ATTEMPTS):
                try:
                    response = await client.post(
                        delivery.url,
                        content=delivery.body,
                        headers={"Content-Type": "application/json"},
                    )
                    if response.status_code < 400:
                        return
                    problem = f"it answered {response.status_code}"
                except httpx.HTTPError as error:
                    problem = str(error) or type(error).__name__
                await trio.sleep(delay)
                delay *= 2
            self._on_failure(
                delivery.service,
                f"health webhook {delivery.url} failed {ATTEMPTS} times ({problem}); gave up",
            )


def webhook_body(service: str, instance: str, health: Health, message: str) -> bytes:
    """The JSON a health webhook receives."""
    return json.dumps(
        {
            "event": "health",
            "service": service,
            "instance": instance,
            "health": health.value,
            "timestamp": time.time(),
            "message": message,
        }
    ).encode()
