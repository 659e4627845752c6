"""Private ports: where a release listens, given to it as PORT, behind the public proxy."""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import platform
import random
import select
import socket
from collections.abc import Iterable

import trio

# Ports handed out recently are not handed out again at once: a release may not have bound
# its port yet when the next one is asked for.
_recent: collections.deque[int] = collections.deque(maxlen=256)

_DEFAULT_EPHEMERAL = (32768, 60999)


def ephemeral_range() -> tuple[int, int]:
    """The ports the kernel gives outgoing connections (``ip_local_port_range``)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as file:
            low, high = (int(word) for word in file.read().split())
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL
    return low, high


def private_range() -> range:
    """Where private ports are chosen: the 16,384 ports below the ephemeral range (or above
    it, when it starts too low). A port the kernel chose with ``bind(0)`` is ephemeral:
    between the check and the release's own bind, any outgoing connection on the machine
    (a health probe, a client of another service) could take it as its source port, and
    the release would fail to start with "address in use"."""
    low, high = ephemeral_range()
    if low > 16384 + 1024:
        return range(low - 16384, low)
    return range(high + 1, min(high + 1 + 16384, 65536))


def allocate() -> int:
    """A free TCP port on 127.0.0.1, outside the ephemeral range, not one handed out
    recently. Chosen at random, so that two daemons on one machine rarely try the same."""
    choices = private_range()
    for _ in range(256):
        port = random.choice(choices)  # a spread, not a secret
        if port in _recent:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _recent.append(port)
        return port
    raise OSError("no free TCP port on 127.0.0.1")


async def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port`` right now."""
    known = _connects_at_once(port)
    if known is not None:
        return known
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return False
    await stream.aclose()
    return True


def _connects_at_once(port: int) -> bool | None:
    """Whether a connection to 127.0.0.1:``port`` is accepted, when the kernel knows within
    the ``connect`` call, as it does on loopback (the handshake or the reset runs in the
    call); None when it does not (a full accept queue drops the SYN). ~20 µs, a tenth of
    opening a trio stream: the readiness poll tries a new release's port this way every
    few milliseconds."""
    with socket.socket() as sock:
        sock.setblocking(False)
        error = sock.connect_ex(("127.0.0.1", port))
        if error == errno.EINPROGRESS:
            poller = select.poll()
            poller.register(sock, select.POLLOUT)
            if not poller.poll(0):
                return None
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error in (0, errno.ECONNREFUSED):
        return error == 0
    return None


# System calls by machine (/proc/<pid>/syscall names the one a thread is blocked in by
# number): accept and accept4, whose first argument is the socket; and poll, select and
# their variants, whose sets /proc does not show.
_ACCEPT_CALLS = {"x86_64": {43, 288}, "aarch64": {202, 242}}.get(platform.machine(), set())
_POLL_CALLS = {"x86_64": {7, 23, 270, 271}, "aarch64": {72, 73}}.get(platform.machine(), set())


def waits_for_connections(listen_fd: int, pids: Iterable[int]) -> bool:
    """Whether one of ``pids`` waits for connections on the socket the daemon has as ``listen_fd``.

    A release handed the public socket shares its accept queue with the release before
    it; nothing can connect to the new one alone to see if it is up. What shows it is up
    is that a process of it holds the socket and waits: the socket is in one of its epoll
    sets (asyncio, trio, libuv, Hypercorn, Uvicorn), or a thread of it is blocked in
    ``accept`` on it, or in ``poll``/``select`` (Python's ``socketserver``, Gunicorn's
    sync workers), whose sets cannot be seen and are taken to include it. Taken too early
    (a master process polling only its own pipe) the switch costs no connection: they
    wait in the shared queue until the new release accepts them.
    """
    wanted = f"socket:[{os.fstat(listen_fd).st_ino}]"
    for pid in pids:
        base = f"/proc/{pid}"
        try:
            links = {}
            for name in os.listdir(f"{base}/fd"):
                with contextlib.suppress(OSError):
                    links[int(name)] = os.readlink(f"{base}/fd/{name}")
        except OSError:  # gone meanwhile
            continue
        held = {fd for fd, link in links.items() if link == wanted}
        if held and (_polls(base, links, held) or _accepts(base, held)):
            return True
    return False


def _polls(base: str, links: dict[int, str], held: set[int]) -> bool:
    for fd, link in links.items():
        if link != "anon_inode:[eventpoll]":
            continue
        with contextlib.suppress(OSError), open(f"{base}/fdinfo/{fd}") as info:
            for line in info:
                if line.startswith("tfd:") and int(line.split()[1]) in held:
                    return True
    return False


def _accepts(base: str, held: set[int]) -> bool:
    with contextlib.suppress(OSError):
        for task in os.listdir(f"{base}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"{base}/task/{task}/syscall") as call:
                    fields = call.read().split()
                number = int(fields[0])
                if number in _POLL_CALLS or (
                    number in _ACCEPT_CALLS and int(fields[1], 16) in held
                ):
                    return True
    return False
