"""What long-running commands share: stopping on Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable

import trio


async def until_signalled(body: Callable[[], Awaitable[None]]) -> bool:
    """Run ``body`` until it returns or SIGINT/SIGTERM arrives; True if a signal stopped it.

    A signal cancels the body, which stops whatever it runs in order (a supervisor stops
    its children with their graces), instead of tearing through with KeyboardInterrupt.
    """
    stopped = False
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal stopped
                async for _ in signals:
                    stopped = True
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(watch)
            await body()
            nursery.cancel_scope.cancel()
    return stopped
