"""Telling that a release waits on a handed-over socket, with real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from dployr.engine.os.ports import _connects_at_once, accepts, waits_for_connections

CHILDREN = {
    "asyncio": """
import asyncio, socket, sys
async def main():
    sock = socket.socket(fileno=int(sys.argv[1]))
    server = await asyncio.start_server(lambda r, w: w.close(), sock=sock)
    print("up", flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
""",
    "blocking accept": """
import socket, sys
sock = socket.socket(fileno=int(sys.argv[1]))
print("up", flush=True)
sock.accept()
""",
    "socketserver (poll)": """
import socket, socketserver, sys
server = socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler, False)
server.socket.close()
server.socket = socket.socket(fileno=int(sys.argv[1]))
print("up", flush=True)
server.serve_forever()
""",
    "holds it, never waits on it": """
import socket, sys, time
sock = socket.socket(fileno=int(sys.argv[1]))
print("up", flush=True)
time.sleep(3600)
""",
}


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


@contextmanager
def spawn(code: str, sock: socket.socket) -> Iterator[subprocess.Popen[str]]:
    """A child given ``sock``, once it says it has set up; killed at the end."""
    fd = sock.fileno()
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(fd)], stdout=subprocess.PIPE, text=True, pass_fds=(fd,)
    )
    assert child.stdout is not None
    with child:
        try:
            assert child.stdout.readline() == "up\n"
            yield child
        finally:
            child.kill()


def settle(check: bool, child: subprocess.Popen[str], sock: socket.socket) -> bool:
    """Poll for up to 5 s until the answer is ``check`` (the child may still be on its way)."""
    deadline = time.monotonic() + 5
    while True:
        answer = waits_for_connections(sock.fileno(), [child.pid])
        if answer == check or time.monotonic() > deadline:
            return answer
        time.sleep(0.01)


@pytest.mark.parametrize("kind", ["asyncio", "blocking accept", "socketserver (poll)"])
def test_a_process_waiting_on_the_socket_is_seen(kind: str, listener: socket.socket) -> None:
    with spawn(CHILDREN[kind], listener) as child:
        assert settle(True, child, listener) is True


def test_a_process_that_only_holds_the_socket_is_not_waiting(listener: socket.socket) -> None:
    with spawn(CHILDREN["holds it, never waits on it"], listener) as child:
        inode = f"socket:[{os.fstat(listener.fileno()).st_ino}]"
        fds = f"/proc/{child.pid}/fd"
        assert inode in [os.readlink(f"{fds}/{fd}") for fd in os.listdir(fds)]
        assert waits_for_connections(listener.fileno(), [child.pid]) is False
    # Gone: nothing to find.
    assert waits_for_connections(listener.fileno(), [child.pid]) is False


async def test_accepts_tells_a_listening_port_from_a_closed_one() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        assert not await accepts(port)  # bound, not listening: refused
        server.listen()
        assert await accepts(port)
    assert not await accepts(port)


def test_a_connect_the_kernel_has_not_answered_yet_is_not_taken_for_an_answer() -> None:
    # A full accept queue drops the SYN: neither accepted nor refused within the call, so
    # the poll asks again the slow way instead of calling the port closed.
    with socket.socket() as server, socket.socket() as first:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        first.setblocking(False)
        first.connect_ex(("127.0.0.1", port))  # takes the queue's one place
        assert _connects_at_once(port) is None
