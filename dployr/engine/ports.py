"""Private ports: where a release listens, given to it as PORT, behind the public proxy."""

from __future__ import annotations

import collections
import socket

import trio

# Ports handed out recently are not handed out again at once: a release may not have bound
# its port yet when the next one is asked for.
_recent: collections.deque[int] = collections.deque(maxlen=256)


def allocate() -> int:
    """A free TCP port on 127.0.0.1, chosen by the kernel, not one handed out recently."""
    for _ in range(64):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _recent:
            _recent.append(port)
            return port
    raise OSError("no free TCP port on 127.0.0.1")


async def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port`` right now."""
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return False
    await stream.aclose()
    return True
