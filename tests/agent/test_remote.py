"""The control plane's RemoteHandle, fed frames as its hub feeds it: a slow follower is told
what it missed, and a reconnect opens the subscription again where it was."""

from __future__ import annotations

import contextlib

import pytest
import trio

from dployr.cluster.remote import SUBSCRIPTION_ENTRIES, Outgoing, RemoteHandle
from dployr.logs.values import LogLine
from dployr.models import Health, ServiceStatus
from dployr.protocol import codec
from dployr.protocol import messages as m
from dployr.protocol import wire as w
from dployr.protocol.errors import Error
from dployr.protocol.feed import Gap

WEB = m.ServiceInfo(
    name="web",
    instance="a1",
    status=ServiceStatus.RUNNING,
    health=Health.HEALTHY,
    pid=1234,
    port=8000,
    restarts=0,
    deployment=1,
    description="",
    deploying=None,
    since=1.0,
    message="",
    created_at=1.0,
    last_deploy_at=1.0,
)


def line(cursor: int) -> LogLine:
    return LogLine(cursor, 1.0, "stdout", f"line {cursor}", 1)


def sent(outgoing: Outgoing) -> list[w.Frame]:
    frames = []
    while True:
        try:
            frames.append(w.decode_frame(outgoing.receive.receive_nowait()))
        except trio.WouldBlock:
            return frames


async def test_a_slow_remote_follower_gets_a_gap_then_a_reconnect_resumes_after_it() -> None:
    remote = RemoteHandle("a1")
    remote.on_update(w.Update(1, "e1", True, 1, (WEB,)))
    first = Outgoing()
    remote.attach(first)
    follow = remote.follow_logs("web", after=0)
    async with contextlib.aclosing(follow):
        (subscribe,) = sent(first)
        assert subscribe == w.Subscribe(1, "logs", "web", 0, None, None)

        total = SUBSCRIPTION_ENTRIES + 10
        for cursor in range(1, total + 1):  # nobody reads meanwhile
            remote.on_items(1, (line(cursor),))
        got = [await anext(follow) for _ in range(SUBSCRIPTION_ENTRIES)]
        assert [entry[0].cursor for entry in got] == list(range(1, SUBSCRIPTION_ENTRIES + 1))  # type: ignore[index]
        remote.on_items(1, (line(total + 1),))
        assert await anext(follow) == Gap(10, SUBSCRIPTION_ENTRIES + 1, total)
        assert await anext(follow) == [line(total + 1)]

        # The channel breaks; on the next one the follow is opened after its last cursor.
        remote.detach(first)
        second = Outgoing()
        remote.attach(second)
        assert sent(second) == [w.Subscribe(1, "logs", "web", total + 1, None, None)]
    assert sent(second) == [w.Unsubscribe(1)]


async def test_a_request_to_an_away_instance_fails_at_once_and_a_waiting_one_is_sent_again() -> (
    None
):
    remote = RemoteHandle("a1", timeout=30)
    with pytest.raises(Error, match="instance a1 is away"):
        await remote.request(m.ListServices())
    first = Outgoing()
    remote.attach(first)
    replies: list[object] = []

    async def ask() -> None:
        replies.append(await remote.request(m.GetService("web")))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        call = await first.receive.receive()
        remote.detach(first)  # no Result came back on that channel
        second = Outgoing()
        remote.attach(second)
        again = await second.receive.receive()
        assert again == call  # the same Call, the same id
        frame = w.decode_frame(again)
        assert isinstance(frame, w.Call)
        remote.on_result(w.Result(frame.id, reply=codec.unstructure(WEB)))
    assert replies == [WEB]
