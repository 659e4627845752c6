"""The log pump: a real pipe read into batches of lines, steady output gathered.

The pipes are real; the clock is trio's autojump clock, so the flush window is virtual
time and no test waits on the wall clock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from dployr.engine.release import FLUSH_WINDOW, READ_SIZE, pump
from dployr.logs.framing import Lines

F_SETPIPE_SZ = 1031


class Pipe:
    """A pipe as the launcher makes it: the read end a trio stream, the write end ours."""

    def __init__(self) -> None:
        read, self._write = os.pipe()
        fcntl.fcntl(self._write, F_SETPIPE_SZ, 1 << 20)
        self.stream = trio.lowlevel.FdStream(read)

    def write(self, data: bytes) -> None:
        assert os.write(self._write, data) == len(data)

    def close_writer(self) -> None:
        if self._write >= 0:
            os.close(self._write)
            self._write = -1


@pytest.fixture
async def pipe() -> AsyncIterator[Pipe]:
    pipe = Pipe()
    try:
        yield pipe
    finally:
        pipe.close_writer()
        await pipe.stream.aclose()


class Batches:
    """What the pump hands over: each batch's lines and the (virtual) time it came."""

    def __init__(self) -> None:
        self.lines: list[list[str]] = []
        self.at: list[float] = []
        self.arrived = trio.Event()

    def __call__(self, lines: Lines, ts: float) -> None:
        self.lines.append(lines.lines)
        self.at.append(trio.current_time())
        self.arrived.set()

    async def until(self, count: int) -> list[str]:
        """Wait until ``count`` batches have come; the last one."""
        with trio.fail_after(60):  # virtual time: fails at once if no batch can come
            while len(self.lines) < count:
                self.arrived = trio.Event()
                await self.arrived.wait()
        return self.lines[count - 1]


async def test_output_after_a_quiet_spell_comes_at_once_and_steady_output_is_gathered(
    autojump_clock: trio.testing.MockClock, pipe: Pipe
) -> None:
    batches = Batches()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump, pipe.stream, batches)
        start = trio.current_time()
        pipe.write(b"one\n")
        assert await batches.until(1) == ["one"]
        assert batches.at[-1] == start  # no wait: nothing came just before it
        # More output right after a batch: held for the rest of the window, and what comes
        # meanwhile joins the same batch.
        pipe.write(b"two\n")
        await trio.testing.wait_all_tasks_blocked()
        assert len(batches.lines) == 1  # "two" is read and waits for the window to end
        pipe.write(b"three\nfour")
        pipe.write(b"\n")
        assert await batches.until(2) == ["two", "three", "four"]
        assert batches.at[-1] == start + FLUSH_WINDOW  # the latency it added: the window
        await trio.sleep(1)  # a quiet spell
        before = trio.current_time()
        pipe.write(b"five\n")
        assert await batches.until(3) == ["five"]
        assert batches.at[-1] == before
        pipe.write(b"last words, no newline")
        pipe.close_writer()
        await trio.testing.wait_all_tasks_blocked()
    assert batches.lines[-1] == ["last words, no newline"]  # flushed at EOF


async def test_after_a_full_read_the_rest_is_taken_without_a_window(
    autojump_clock: trio.testing.MockClock, pipe: Pipe
) -> None:
    batches = Batches()
    line = b"x" * 99 + b"\n"
    lines = READ_SIZE // len(line) + 10
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump, pipe.stream, batches)
        await trio.sleep(1)
        start = trio.current_time()
        pipe.write(line * lines)  # more than one read takes
        await batches.until(2)
        assert batches.at == [start, start]
        pipe.close_writer()
    assert sum(len(batch) for batch in batches.lines) == lines


async def test_while_reads_come_back_full_the_pump_reads_on_without_windows(
    autojump_clock: trio.testing.MockClock, pipe: Pipe
) -> None:
    batches = Batches()
    observed: list[int] = []  # how many batches another task saw whenever it ran
    poke = trio.Event()

    async def other_task() -> None:
        nonlocal poke
        while True:
            await poke.wait()
            poke = trio.Event()
            observed.append(len(batches.lines))

    def on_lines(lines: Lines, ts: float) -> None:
        batches(lines, ts)
        poke.set()  # the other task can run as soon as the pump lets it

    line = b"y" * 99 + b"\n"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_task)
        nursery.start_soon(pump, pipe.stream, on_lines)
        pipe.write(b"first\n")
        await batches.until(1)
        start = batches.at[0]
        # Within one window the service writes three full reads' worth: after the window,
        # the pump reads on at once, not a window per read, yet lets other tasks run.
        pipe.write(line * (3 * READ_SIZE // len(line)))
        await batches.until(4)
        assert batches.at[1:] == [start + FLUSH_WINDOW] * 3
        # Other tasks ran while the pump was at it (trio may run them before or after the
        # pump in each round, so in between the second batch and the last).
        assert {2, 3} & set(observed)
        nursery.cancel_scope.cancel()


async def test_what_was_written_is_kept_when_the_pump_is_stopped_in_a_window(
    autojump_clock: trio.testing.MockClock, pipe: Pipe
) -> None:
    batches = Batches()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump, pipe.stream, batches)
        pipe.write(b"one\n")
        await batches.until(1)
        pipe.write(b"two\n")
        await trio.testing.wait_all_tasks_blocked()  # the pump waits for the window to end
        nursery.cancel_scope.cancel()
    assert batches.lines == [["one"], ["two"]]


async def test_a_stream_without_a_file_descriptor_is_read_as_it_comes() -> None:
    send, receive = trio.testing.memory_stream_one_way_pair()
    batches = Batches()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump, receive, batches)
        await send.send_all(b"a\nb")
        assert await batches.until(1) == ["a"]
        await send.send_all(b"\nc\n")
        assert await batches.until(2) == ["b", "c"]
        await send.aclose()
    assert batches.lines == [["a"], ["b", "c"]]
