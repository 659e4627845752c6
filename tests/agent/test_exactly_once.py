"""The agent's side of exactly once, frame by frame: the test plays the control plane (a
WebSocket server the real ``dployr agent`` process dials) and repeats Calls as a control
plane does after a reconnect."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    serve_websocket,
)

from dployr.protocol import messages as m
from dployr.protocol import wire as w
from tests.agent.conftest import WAIT, agent
from tests.engine.conftest import web_settings
from tests.helpers import web_repo


class FakeControlPlane:
    """Accepts the agent's channels one at a time, handing each to the test."""

    def __init__(self) -> None:
        self.send, self.channels = trio.open_memory_channel[WebSocketConnection](0)
        self.headers: list[dict[str, str]] = []

    async def handler(self, request: WebSocketRequest) -> None:
        self.headers.append({k.decode(): v.decode() for k, v in request.headers})
        ws = await request.accept()
        await self.send.send(ws)
        await trio.sleep_forever()  # the test drives the channel

    async def next_channel(self) -> WebSocketConnection:
        """The next channel, its hello answered."""
        with trio.fail_after(WAIT):
            ws = await self.channels.receive()
            hello = w.decode_frame(await ws.get_message())
        assert isinstance(hello, w.Hello)
        assert hello.instance == "a1"
        await ws.send_message(w.encode_frame(w.HelloAck("a1", w.WIRE_VERSION, 30.0)))
        return ws


async def next_result(ws: WebSocketConnection) -> w.Result:
    """The next Result, skipping the other frames (updates)."""
    with trio.fail_after(WAIT):
        while True:
            frame = w.decode_frame(await ws.get_message())
            if isinstance(frame, w.Result):
                return frame


async def read_until_closed(ws: WebSocketConnection) -> None:
    while True:
        await ws.get_message()


def kept_calls(data_dir: Path) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(data_dir / "outbox.db")) as db:
        return dict(db.execute("SELECT id, state FROM calls").fetchall())


@contextlib.asynccontextmanager
async def dialled(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[FakeControlPlane]:
    """A real agent, joined already (agent.json), dialling a fake control plane."""
    fake = FakeControlPlane()
    server = await nursery.start(serve_websocket, fake.handler, "127.0.0.1", 0, None)
    data_dir = tmp_path / "a1"
    data_dir.mkdir()
    (data_dir / "agent.json").write_text(
        json.dumps(
            {
                "url": f"http://127.0.0.1:{server.port}",
                "instance": "a1",
                "credential": "dployr_agent_test",
            }
        )
    )
    # A Call an earlier run of the agent began and never finished.
    with contextlib.closing(sqlite3.connect(data_dir / "outbox.db")) as db, db:
        db.execute(
            "CREATE TABLE calls (id TEXT PRIMARY KEY, state TEXT NOT NULL, result TEXT,"
            " at REAL NOT NULL)"
        )
        db.execute("INSERT INTO calls VALUES ('half-done', 'running', NULL, 1e12)")
    async with agent(data_dir):
        yield fake
    nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_a_repeated_call_is_answered_from_the_outbox_without_running_again(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    repo = web_repo(tmp_path / "repo")
    async with dialled(tmp_path, nursery) as fake:
        ws = await fake.next_channel()
        assert fake.headers[0]["authorization"] == "Bearer dployr_agent_test"
        deploy = w.Call("c1", m.Deploy("web", web_settings(repo, None)))
        await ws.send_message(w.encode_frame(deploy))
        first = await next_result(ws)
        assert first.error is None, first.error

        # Not acked: the same Call again, on this channel and on the next one, is
        # answered with the kept Result; the deploy ran once.
        await ws.send_message(w.encode_frame(deploy))
        assert await next_result(ws) == first
        await ws.aclose()
        ws = await fake.next_channel()
        await ws.send_message(w.encode_frame(deploy))
        assert await next_result(ws) == first
        await ws.send_message(w.encode_frame(w.Call("c2", m.ListDeployments("web"))))
        assert len((await next_result(ws)).reply) == 1

        # Acked: forgotten (a control plane never sends an id again once it has acked it).
        assert kept_calls(tmp_path / "a1")["c1"] == "done"
        await ws.send_message(w.encode_frame(w.Ack("c1")))
        await ws.send_message(w.encode_frame(w.Call("c3", m.ListServices())))
        await next_result(ws)
        assert "c1" not in kept_calls(tmp_path / "a1")


@pytest.mark.slow
async def test_a_call_an_earlier_run_left_half_done_is_never_run_again(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with dialled(tmp_path, nursery) as fake:
        ws = await fake.next_channel()
        await ws.send_message(w.encode_frame(w.Call("half-done", m.ListServices())))
        unknown = await next_result(ws)
        assert unknown.error is not None
        assert unknown.error.code == "unavailable"
        assert "its outcome is unknown" in unknown.error.message

        # A frame an agent does not take closes the channel with the reason; it dials again.
        await ws.send_message(w.encode_frame(w.Pong(1)))
        with pytest.raises(ConnectionClosed) as closed, trio.fail_after(WAIT):
            await read_until_closed(ws)
        assert closed.value.reason.code == 1008
        assert "does not take pong frames" in str(closed.value.reason.reason)
        await fake.next_channel()
