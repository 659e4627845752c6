"""Hostile HTTP/1.1 clients: bodies the handler never reads must not hang or leak connections.

A request whose body arrives in a later TCP packet than its headers, sent to a handler that
answers without reading it (a 401 before auth, a 404, a 405, a restart), used to leave the
keep-alive connection unanswered and its socket in CLOSE-WAIT for good (one file descriptor
per request). See dployr/gateway/h11_patch.py for the cause in Hypercorn.
"""

from __future__ import annotations

import os
import socket

import h11
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app
from quart_trio import QuartTrio

from dployr.gateway import h11_patch
from tests.helpers import Daemon

BODY = b'{"remote": {"url": "/nowhere"}}'


class Connection:
    """One raw keep-alive HTTP/1.1 connection, read with h11."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.http = h11.Connection(h11.CLIENT)

    async def send_headers(self, method: str, target: str, headers: dict[str, str]) -> None:
        fields = [("Host", "localhost"), *headers.items()]
        request = h11.Request(method=method, target=target, headers=fields)
        await self.stream.send_all(self.http.send(request) or b"")

    async def send_body(self, body: bytes) -> None:
        data = (self.http.send(h11.Data(data=body)) or b"") + (
            self.http.send(h11.EndOfMessage()) or b""
        )
        await self.stream.send_all(data)

    async def response(self) -> tuple[int, bytes]:
        """The next whole response: status and body."""
        status, body = 0, b""
        while True:
            event = self.http.next_event()
            if event is h11.NEED_DATA:
                self.http.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, body
            else:
                raise AssertionError(f"unexpected {event!r}")

    async def server_moved_on(self) -> None:
        """A whole request on another connection: the server has finished with this answer.

        The server ends a request (recycling or closing the connection) just after it sends
        the answer; a body that arrives before that is taken as usual. An attacker's body
        comes later, as it does once the server has served a request after that answer.
        """
        host, port = self.stream.socket.getpeername()[:2]
        async with await connect(f"http://{host}:{port}") as other:
            conn = Connection(other)
            await conn.send_headers("GET", "/healthz", {})
            await other.send_all(conn.http.send(h11.EndOfMessage()) or b"")
            assert (await conn.response())[0] == 200

    async def unread_body_then_healthz(
        self, method: str, target: str, headers: dict[str, str]
    ) -> tuple[int, int]:
        """The attack: headers, the whole answer, the body in a later packet, then /healthz."""
        await self.send_headers(method, target, {**headers, "Content-Length": str(len(BODY))})
        # The answer comes before the body is sent: the body is surely a later packet.
        status, _ = await self.response()
        await self.server_moved_on()
        await self.send_body(BODY)
        self.http.start_next_cycle()
        await self.send_headers("GET", "/healthz", {})
        await self.stream.send_all(self.http.send(h11.EndOfMessage()) or b"")
        health, _ = await self.response()
        self.http.start_next_cycle()
        return status, health


async def connect(url: str) -> trio.SocketStream:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
    return stream


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.slow
async def test_a_body_the_handler_never_read_does_not_stall_the_connection(
    daemon: Daemon,
) -> None:
    token = {"Authorization": f"Bearer {daemon.token}"}
    json = {"Content-Type": "application/json"}
    with trio.fail_after(30):
        async with await connect(daemon.url) as stream:
            conn = Connection(stream)
            # 401 before auth, 404, 405, and a restart (which takes no body), in a row.
            assert await conn.unread_body_then_healthz("POST", "/api/v1/services", json) == (
                401,
                200,
            )
            assert await conn.unread_body_then_healthz("POST", "/nowhere", json) == (404, 200)
            assert await conn.unread_body_then_healthz("POST", "/healthz", json) == (405, 200)
            restart = "/api/v1/services/nothing/restart"
            assert await conn.unread_body_then_healthz("POST", restart, {**json, **token}) == (
                404,
                200,
            )


@pytest.mark.slow
async def test_tokenless_clients_that_send_late_bodies_leak_no_file_descriptors(
    daemon: Daemon,
) -> None:
    assert daemon.process is not None
    pid = daemon.process.pid
    with trio.fail_after(30):
        async with await connect(daemon.url) as stream:  # the gateway's lazy set-up, once
            assert await Connection(stream).unread_body_then_healthz(
                "POST", "/api/v1/services", {}
            ) == (401, 200)
    baseline = open_fds(pid)

    async def attack() -> None:
        async with await connect(daemon.url) as stream:
            conn = Connection(stream)
            await conn.send_headers("POST", "/api/v1/services", {"Content-Length": str(len(BODY))})
            assert (await conn.response())[0] == 401
            await conn.server_moved_on()
            await conn.send_body(BODY)
            await stream.send_eof()  # the client leaves...
            while await stream.receive_some(65536):
                pass  # ...and the daemon closes its side (it used to stay in CLOSE-WAIT)

    with trio.fail_after(60):
        for _ in range(30):
            async with trio.open_nursery() as nursery:
                for _ in range(10):
                    nursery.start_soon(attack)
        async with await connect(daemon.url) as stream:  # the daemon is still answering
            assert await Connection(stream).unread_body_then_healthz(
                "POST", "/api/v1/services", {}
            ) == (401, 200)
    assert open_fds(pid) <= baseline + 1  # (that last connection may not be closed yet)


async def test_hypercorn_recycles_a_connection_whose_body_the_app_did_not_read() -> None:
    """The carried Hypercorn fix alone (no dployr guard in front of the app)."""
    h11_patch.apply()
    app = QuartTrio("bare")

    @app.post("/refuse")
    async def refuse() -> tuple[str, int]:
        return "no", 401

    @app.get("/healthz")
    async def healthz() -> str:
        return "ok"

    config = Config()
    config.bind = ["127.0.0.1:0"]
    sockets = config.create_sockets()
    for sock in sockets.insecure_sockets:
        sock.listen(config.backlog)
    port = sockets.insecure_sockets[0].getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: worker_serve(
                wrap_app(app, config.wsgi_max_body_size, "asgi"),
                config,
                sockets=sockets,
                task_status=task_status,
            )
        )
        with trio.fail_after(10):
            async with await connect(f"http://127.0.0.1:{port}") as stream:
                conn = Connection(stream)
                for _ in range(3):
                    assert await conn.unread_body_then_healthz("POST", "/refuse", {}) == (401, 200)
        nursery.cancel_scope.cancel()
