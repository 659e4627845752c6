"""A real ``dployr agent`` told of several control planes (here, test servers that speak
the wire): it keeps a channel to each, and stops dialling one the control planes forgot."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from trio_websocket import WebSocketConnection, WebSocketRequest, serve_websocket

from dployr.protocol import wire as w
from tests.agent.conftest import WAIT, agent
from tests.cli.conftest import free_port

pytestmark = pytest.mark.slow


class FakeControlPlane:
    """Accepts the agent's channels, answering each hello with the list it is given."""

    def __init__(self, control_plane: str) -> None:
        self.control_plane = control_plane
        self.planes: tuple[w.ControlPlane, ...] = ()
        self.send, self.channels = trio.open_memory_channel[WebSocketConnection](0)
        self.url = ""

    async def handler(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        hello = w.decode_frame(await ws.get_message())
        assert isinstance(hello, w.Hello)
        ack = w.HelloAck(hello.instance, w.WIRE_VERSION, 30.0, self.control_plane, self.planes)
        await ws.send_message(w.encode_frame(ack))
        await self.send.send(ws)
        try:
            while True:  # the agent's updates and pongs: not under test
                await ws.get_message()
        except Exception:
            return

    async def next_channel(self) -> WebSocketConnection:
        with trio.fail_after(WAIT):
            return await self.channels.receive()


async def serve(nursery: trio.Nursery, name: str) -> FakeControlPlane:
    fake = FakeControlPlane(name)
    server = await nursery.start(serve_websocket, fake.handler, "127.0.0.1", 0, None)
    fake.url = f"http://127.0.0.1:{server.port}"
    return fake


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        yield nursery
        nursery.cancel_scope.cancel()


async def test_an_agent_dials_every_control_plane_and_stops_dialling_a_forgotten_one(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    one, two = await serve(nursery, "one"), await serve(nursery, "two")
    gone = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    planes = (
        w.ControlPlane("one", one.url),
        w.ControlPlane("two", two.url),
        w.ControlPlane("gone", gone),
    )
    one.planes = two.planes = planes
    data_dir = tmp_path / "a1"
    data_dir.mkdir()
    (data_dir / "agent.json").write_text(
        json.dumps({"url": one.url, "instance": "a1", "credential": "dployr_agent_test"})
    )
    async with agent(data_dir) as a1:
        ws = await one.next_channel()
        await two.next_channel()  # told of it by the first: dialled too
        await a1.wait_for("cannot reach the control plane: all attempts to connect to 127.0.0.1")
        assert json.loads((data_dir / "control-planes.json").read_text()) == [
            one.url,
            two.url,
            gone,
        ]

        # Both channels are up, so both lists (with the dead one) were learned before the
        # update below: one learned later would bring the dead one back.
        for plane in (one, two):
            said = f"connected to the control plane {plane.url} "
            if not any(said in line for line in a1.lines):
                await a1.wait_for(said)

        # The leader forgot the dead one: the agent stops dialling it, keeps the others.
        await ws.send_message(w.encode_frame(w.ControlPlanes(planes[:2])))
        await a1.wait_for(f"no longer dialling {gone}: the control planes forgot it")
        assert json.loads((data_dir / "control-planes.json").read_text()) == [one.url, two.url]
