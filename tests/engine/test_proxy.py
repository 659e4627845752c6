"""The proxy on its own, over real loopback sockets: relaying, switching, draining, stopping."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from dployr.config import EngineConfig, default
from dployr.engine.proxy import PortInUse, Proxy
from dployr.supervision import ChildContext

WAIT = 10.0
Handler = Callable[[trio.SocketStream], Awaitable[None]]


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[int]:
    """A loopback TCP server running ``handler`` per connection; yields its port."""
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1")
        listeners = await nursery.start(serve)
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def running(
    target: int | None, *, connect_deadline: float = default(EngineConfig, "connect_deadline")
) -> AsyncIterator[Proxy]:
    """A proxy on a free loopback port, forwarding to ``target``."""
    probe = trio.socket.socket()
    await probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    proxy = Proxy("web", "127.0.0.1", port, target, connect_deadline=connect_deadline)
    ctx = ChildContext(("web", f"proxy-{port}"), 1, None)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run, ctx)
        yield proxy
        nursery.cancel_scope.cancel()


async def echo(stream: trio.SocketStream) -> None:
    """Send back what arrives; half-close after the client does."""
    async for data in stream:
        await stream.send_all(data)
    await stream.send_eof()


def named(name: bytes) -> Handler:
    """A server that answers every message with its name and stays open until EOF."""

    async def handler(stream: trio.SocketStream) -> None:
        async for _ in stream:
            await stream.send_all(name)

    return handler


async def read_all(stream: trio.SocketStream) -> bytes:
    chunks = []
    async for data in stream:
        chunks.append(data)
    return b"".join(chunks)


async def ask(stream: trio.SocketStream, message: bytes = b"?") -> bytes:
    await stream.send_all(message)
    return await stream.receive_some()


async def test_bytes_go_both_ways_intact_and_a_half_close_is_passed_on() -> None:
    payload = os.urandom(8 * 1024 * 1024)  # many chunks: short sends and the bulk checkpoint
    with trio.fail_after(WAIT):
        async with server(echo) as target, running(target) as proxy:
            client = await trio.open_tcp_stream("127.0.0.1", proxy.port)
            async with client, trio.open_nursery() as nursery:

                async def send() -> None:
                    await client.send_all(payload)
                    await client.send_eof()  # the echo server sees EOF, then ends its side

                nursery.start_soon(send)
                received = await read_all(client)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


async def test_a_switch_moves_new_connections_and_the_old_ones_drain() -> None:
    with trio.fail_after(WAIT):
        async with (
            server(named(b"old")) as old,
            server(named(b"new")) as new,
            running(old) as proxy,
        ):
            first = await trio.open_tcp_stream("127.0.0.1", proxy.port)
            assert await ask(first) == b"old"
            assert proxy.connections(old) == 1

            proxy.switch(new)
            second = await trio.open_tcp_stream("127.0.0.1", proxy.port)
            assert await ask(second) == b"new"
            assert await ask(first) == b"old"  # in flight: still the old release
            assert (proxy.connections(old), proxy.connections(new)) == (1, 1)

            drained = trio.Event()

            async def wait_drained() -> None:
                await proxy.drained(old)
                drained.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_drained)
                await trio.testing.wait_all_tasks_blocked()
                assert not drained.is_set()
                await first.aclose()
            await proxy.drained(old)
            assert proxy.connections(old) == 0
            assert proxy.connections(new) == 1
            await second.aclose()


async def test_a_connection_before_the_first_release_waits_for_the_switch() -> None:
    with trio.fail_after(WAIT):
        async with server(echo) as target, running(None) as proxy:
            client = await trio.open_tcp_stream("127.0.0.1", proxy.port)
            await client.send_all(b"early")
            await trio.testing.wait_all_tasks_blocked()
            proxy.switch(target)
            assert await client.receive_some() == b"early"
            await client.aclose()


async def test_a_release_that_never_accepts_closes_the_connection_after_the_deadline() -> None:
    closed = trio.socket.socket()
    await closed.bind(("127.0.0.1", 0))
    nobody = closed.getsockname()[1]  # bound, never listening: connects are refused
    with trio.fail_after(WAIT):
        async with running(nobody, connect_deadline=0.3) as proxy:
            client = await trio.open_tcp_stream("127.0.0.1", proxy.port)
            assert await read_all(client) == b""
            assert proxy.connections(nobody) == 0
            await client.aclose()
    closed.close()


async def test_stopping_the_proxy_closes_its_connections_and_frees_the_port() -> None:
    with trio.fail_after(WAIT):
        async with server(named(b"app")) as target:
            async with running(target) as proxy:
                client = await trio.open_tcp_stream("127.0.0.1", proxy.port)
                assert await ask(client) == b"app"
            # Stopped: the open connection ends (EOF or reset), and the port is free again.
            with contextlib.suppress(trio.BrokenResourceError):
                assert await read_all(client) == b""
            await client.aclose()
            again = trio.socket.socket()
            again.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
            await again.bind(("127.0.0.1", proxy.port))
            again.close()


async def test_a_port_taken_by_another_program_is_refused_in_words() -> None:
    taken = trio.socket.socket()
    await taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    proxy = Proxy("web", "127.0.0.1", port, None, connect_deadline=0.3)
    ctx = ChildContext(("web", f"proxy-{port}"), 1, None)
    with pytest.raises(PortInUse, match=f"port {port} is already in use"):
        await proxy.run(ctx)
    taken.close()


async def test_a_client_that_does_not_read_holds_back_the_app_not_the_daemon() -> None:
    """The proxy reads no more from the app while the client's side is full."""
    sent = 0

    async def firehose(stream: trio.SocketStream) -> None:
        nonlocal sent
        block = b"x" * 65536
        with contextlib.suppress(trio.BrokenResourceError):  # the client leaves at the end
            while True:
                await stream.send_all(block)
                sent += len(block)

    with trio.fail_after(WAIT):
        async with server(firehose) as target, running(target) as proxy:
            client = await trio.open_tcp_stream("127.0.0.1", proxy.port)
            # Every task here (the app, both relays) ends up blocked on a full socket.
            await trio.testing.wait_all_tasks_blocked(cushion=0.1)
            held = sent
            await trio.testing.wait_all_tasks_blocked(cushion=0.1)
            assert sent == held, "the app could keep writing with nobody reading"
            # Bounded by the kernel's socket buffers plus one chunk held by the relay.
            assert sent < 64 * 1024 * 1024
            received = 0
            while received < held:
                received += len(await client.receive_some())
            await client.aclose()
