"""Actors: bounded mailboxes, tell with back-pressure, ask with timeouts and dead actors."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
import trio.testing

from dployr.errors import ActorDead, AskTimeout, DployrError, MailboxFull
from dployr.supervision import Actor, Query


@attrs.frozen
class Add:
    amount: int


@attrs.frozen
class Total(Query[int]):
    pass


@attrs.frozen
class Slow(Query[str]):
    seconds: float


@attrs.frozen
class Refuse(Query[None]):
    pass


@attrs.frozen
class Boom:
    pass


class Counter(Actor[Add | Total | Slow | Refuse | Boom]):
    def __init__(self, mailbox_size: int = 4) -> None:
        super().__init__("counter", mailbox_size=mailbox_size)
        self.total = 0
        self.gate: trio.Event | None = None

    async def handle(self, message: Add | Total | Slow | Refuse | Boom) -> Any:
        if self.gate is not None:
            await self.gate.wait()
        match message:
            case Add(amount):
                self.total += amount
            case Total():
                return self.total
            case Slow(seconds):
                await trio.sleep(seconds)
                return "late"
            case Refuse():
                raise DployrError("no, thank you")
            case Boom():
                raise RuntimeError("boom")
        return None


async def test_tell_and_ask() -> None:
    counter = Counter()
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(counter.run)
        await ref.tell(Add(2))
        ref.tell_nowait(Add(3))
        assert await ref.ask(Total()) == 5
        nursery.cancel_scope.cancel()


async def test_a_full_mailbox_applies_back_pressure_and_tell_nowait_raises() -> None:
    counter = Counter(mailbox_size=2)
    counter.gate = trio.Event()  # the actor is stuck on its first message
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(counter.run)
        await ref.tell(Add(1))  # taken by the actor, which now waits on the gate
        await trio.testing.wait_all_tasks_blocked()
        await ref.tell(Add(1))
        await ref.tell(Add(1))  # the mailbox (2) is now full
        with pytest.raises(MailboxFull, match="counter's mailbox is full"):
            ref.tell_nowait(Add(1))
        sent = trio.Event()

        async def blocked_sender() -> None:
            await ref.tell(Add(1))
            sent.set()

        nursery.start_soon(blocked_sender)
        await trio.testing.wait_all_tasks_blocked()
        assert not sent.is_set()  # back-pressure: the sender waits
        counter.gate.set()
        await sent.wait()
        assert await ref.ask(Total()) == 4
        nursery.cancel_scope.cancel()


async def test_ask_times_out_with_a_clear_error_and_the_late_reply_is_dropped(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(Counter().run)
        start = trio.current_time()
        with pytest.raises(AskTimeout, match="counter did not answer Slow within 1 s"):
            await ref.ask(Slow(10), timeout=1)
        assert trio.current_time() - start == pytest.approx(1)
        # The actor finishes the slow query later and answers nobody; it keeps serving.
        assert await ref.ask(Total(), timeout=20) == 0
        nursery.cancel_scope.cancel()


async def test_a_refused_query_raises_for_the_asker_and_the_actor_carries_on() -> None:
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(Counter().run)
        with pytest.raises(DployrError, match="no, thank you"):
            await ref.ask(Refuse())
        assert await ref.ask(Total()) == 0
        nursery.cancel_scope.cancel()


async def test_asking_a_dead_actor_fails_at_once() -> None:
    counter = Counter()
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(counter.run)
        nursery.cancel_scope.cancel()
    assert not ref.alive
    with pytest.raises(ActorDead, match="counter is not running"):
        await ref.ask(Total())
    with pytest.raises(ActorDead):
        await ref.tell(Add(1))
    with pytest.raises(ActorDead):
        ref.tell_nowait(Add(1))


async def test_pending_asks_fail_when_the_actor_crashes() -> None:
    counter = Counter()
    counter.gate = trio.Event()
    errors: list[BaseException] = []

    async def ask_total(ref: Any) -> None:
        try:
            await ref.ask(Total())
        except ActorDead as error:
            errors.append(error)

    with pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="boom")):
        async with trio.open_nursery() as nursery:
            ref = await nursery.start(counter.run)
            await ref.tell(Boom())
            nursery.start_soon(ask_total, ref)  # queued behind the crash
            await trio.testing.wait_all_tasks_blocked()
            counter.gate.set()
    assert len(errors) == 1
    assert "stopped before answering" in str(errors[0])
