"""One run of a job: its process, started through the engine's launcher, and its ending.

A run is a temporary child of the job's service supervisor (``run-<n>``). It starts the
job's run command in the release folder of the deployment it was given, pumps the
output into the service's log history (noting the cursors, so ``logs --run`` finds its
lines), and waits for the exit, at most the job's timeout: then SIGTERM to the whole
group, the stop grace, SIGKILL (:func:`dployr.engine.launcher.stop`). Stopped from
outside (replaced by a newer run, the job stopped), it runs the same ladder.

How it ended is a value (:class:`Ended`), handed to ``on_end`` whatever happened, in a
shielded step: the run's record is always finished.
"""

from __future__ import annotations

import contextlib
import os
import signal as signals
import struct
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs
import trio

from dployr.engine.os import launcher
from dployr.engine.release import DRAIN_AFTER_EXIT, Running, pump
from dployr.logs.book import LogBook
from dployr.logs.framing import Lines
from dployr.logs.values import LogBatch
from dployr.schedule import RunStatus, describe_seconds
from dployr.supervision import ChildContext


@attrs.frozen
class RunSpec:
    """What one run runs, where, and for how long."""

    service: str
    number: int
    deployment: int
    command: str
    cwd: Path
    env: Mapping[str, str]
    timeout: float
    grace: float

    @property
    def child_id(self) -> str:
        """Its child id in the service's tree: ``run-7``."""
        return f"run-{self.number}"


@attrs.frozen
class Ended:
    """How a run ended."""

    status: RunStatus
    message: str
    ended_at: float
    exit_code: int | None = None
    signal: int | None = None


_RANGE = struct.Struct("<QQ")
"""A journal's record: the first and last cursor of a batch of a run's lines."""


class Output:
    """The cursor ranges of a run's lines in the service's log, merged as they come.

    With a ``journal`` (a file), each batch's range is also appended to it as the batch is
    written: one 16-byte write, never synced, as the log's own frames (the page cache
    outlives a killed daemon). A run cut off by a daemon killed with ``kill -9`` still has
    exactly its own lines (:func:`journal_ranges`), not all the log got after its first.
    """

    def __init__(self, journal: Path | None = None) -> None:
        self.ranges: list[tuple[int, int]] = []
        self.journal = journal
        self._fd: int | None = None
        if journal is not None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            with contextlib.suppress(OSError):  # a full disk: the ranges are in memory only
                self._fd = os.open(journal, flags, 0o600)

    def add(self, batch: LogBatch | None) -> None:
        """Note a batch the run wrote (None: it was dropped, on a full disk)."""
        if batch is None or batch.last_cursor < batch.first_cursor:
            return
        self.add_range(batch.first_cursor, batch.last_cursor)
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.write(self._fd, _RANGE.pack(batch.first_cursor, batch.last_cursor))

    def add_range(self, first: int, last: int) -> None:
        """Note lines ``first`` to ``last`` (merged with the range before if it ends just
        before ``first``)."""
        if self.ranges and self.ranges[-1][1] + 1 == first:
            self.ranges[-1] = (self.ranges[-1][0], last)
        else:
            self.ranges.append((first, last))

    def close(self) -> None:
        """The run has ended and its ranges are recorded: the journal goes."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.journal is not None:
            self.journal.unlink(missing_ok=True)


def journal_ranges(journal: Path) -> list[tuple[int, int]]:
    """The ranges of lines a run's journal names, merged (none if it has no journal)."""
    try:
        data = journal.read_bytes()
    except FileNotFoundError:
        return []
    output = Output()
    for first, last in _RANGE.iter_unpack(data[: len(data) - len(data) % _RANGE.size]):
        output.add_range(first, last)
    return output.ranges


class JobProcess:
    """The run function of a ``run-<n>`` child."""

    def __init__(
        self,
        spec: RunSpec,
        book: LogBook,
        output: Output,
        *,
        on_spawn: Callable[[Running], None],
        on_exit: Callable[[int], None],
        on_end: Callable[[Ended], None],
        stop_reason: Callable[[], str],
        held: tuple[launcher.Held, float] | None = None,
    ) -> None:
        self.spec = spec
        self.held = held
        """Its process, spawned ahead and already let go (at the time given), if so."""
        self.took = False
        """Whether :meth:`run` began, and so owns the held process."""
        self.book = book
        self.output = output
        self._on_spawn = on_spawn
        self._on_exit = on_exit
        self._on_end = on_end
        self._stop_reason = stop_reason

    def _say(self, text: str, ts: float | None = None) -> None:
        batch = self.book.append("system", [text], deployment=self.spec.deployment, ts=ts)
        self.output.add(batch)

    async def run(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Launch, report started with the pid, wait for the exit or the timeout."""
        spec = self.spec
        self.took = True
        if self.held is not None:
            process, started_at = self.held[0].process, self.held[1]
        else:
            try:
                process = await launcher.launch(
                    launcher.LaunchSpec(spec.command, spec.cwd, spec.env)
                )
            except OSError as error:
                message = f"could not start {spec.command!r} in {spec.cwd}: {error.strerror}"
                self._say(f"run {spec.number} failed: {message}")
                self._on_end(Ended(RunStatus.FAILED, message, time.time()))
                task_status.started(0)
                return
            started_at = time.time()
        # Its first line first (no await between): the record notes where its lines begin.
        self._say(
            f"run {spec.number} started (pid {process.pid}, deployment {spec.deployment})",
            started_at,
        )
        self._on_spawn(Running(process.pid, None, spec.deployment, started_at))
        timed_out = False
        stopped = False
        returncode: int | None = None
        pump_scope = trio.CancelScope(shield=True)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pumps, process, pump_scope)
                task_status.started(process.pid)
                try:
                    with trio.move_on_after(spec.timeout) as timer:
                        returncode = await process.wait()
                    if timer.cancelled_caught:
                        timed_out = True
                        self._say(
                            f"run {spec.number} timed out after {describe_seconds(spec.timeout)}:"
                            f" stopping it (SIGTERM, {spec.grace:g} s, SIGKILL)"
                        )
                        returncode = await launcher.stop(process, spec.grace)
                except trio.Cancelled:
                    stopped = True
                    with ctx.shield():
                        returncode = await launcher.stop(process, spec.grace)
                    raise
                finally:
                    with trio.CancelScope(shield=True):
                        await launcher.kill_rest(process)
                    pump_scope.deadline = trio.current_time() + DRAIN_AFTER_EXIT
        finally:
            with trio.CancelScope(shield=True):
                code = await launcher.stop(process, 0)  # no-op if it exited; never a zombie
                self._on_exit(process.pid)
                returncode = code if returncode is None else returncode
                self._end(returncode, timed_out=timed_out, stopped=stopped)

    def _end(self, returncode: int, *, timed_out: bool, stopped: bool) -> None:
        spec = self.spec
        code = returncode if returncode >= 0 else None
        signal = -returncode if returncode < 0 else None
        how = (
            f"exited with code {code}" if code is not None else f"killed by {_signal_name(signal)}"
        )
        if stopped:
            status, message = RunStatus.STOPPED, f"{self._stop_reason()} ({how})"
        elif timed_out:
            status = RunStatus.FAILED
            message = f"timed out after {describe_seconds(spec.timeout)} ({how})"
        elif returncode == 0:
            status, message = RunStatus.SUCCEEDED, how
        else:
            status, message = RunStatus.FAILED, how
        self._say(f"run {spec.number} {status.value}: {message}")
        self._on_end(Ended(status, message, time.time(), code, signal))

    async def _pumps(self, process: launcher.ServiceProcess, scope: trio.CancelScope) -> None:
        deployment = self.spec.deployment
        append = self.book.append
        add = self.output.add

        def to(stream: str) -> Callable[[Lines, float], None]:
            def on_lines(lines: Lines, ts: float) -> None:
                add(append(stream, lines, deployment=deployment, ts=ts))

            return on_lines

        with scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pump, process.stdout, to("stdout"))
                nursery.start_soon(pump, process.stderr, to("stderr"))


def _signal_name(number: int | None) -> str:
    try:
        return signals.Signals(number or 0).name
    except ValueError:
        return f"signal {number}"
