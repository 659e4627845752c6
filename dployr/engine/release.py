"""The process actor: one running release of a service, as an OS process group.

Started as the child ``process`` of a release's own supervisor, ``release-<deployment>.<n>``.
It launches the run command, pumps its stdout and stderr into the service's log book,
tells the supervisor it is started with the pid, and returns the process's exit as a value
(``Crashed(exit_code=1)``, ``Crashed(signal=9)``), so the supervisor restarts it with backoff.
When stopped it runs the ladder (SIGTERM to the group, the grace, SIGKILL) inside the
shield its supervisor bounds, and always awaits the exit.

The pipe readers live inside this actor, not beside it: a pipe belongs to one process
incarnation, so its pump starts and ends with it, and crash output is in the history
before the "exited with code 1" line that follows the exit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path

import attrs
import trio

from dployr.engine.os import launcher
from dployr.logs.book import LogBook
from dployr.logs.framing import Lines, LineSplitter
from dployr.supervision import ChildContext, ExitReason
from dployr.supervision.reasons import from_returncode

READ_SIZE = 256 * 1024
"""The most a pump reads from a pipe at a time, and hands over as one batch."""
FLUSH_WINDOW = 0.001
"""Seconds a pump lets pass after a batch before it takes what came meanwhile (``pump``).

Each batch costs the daemon a wake-up, a frame and a publish whatever its size, and
each wake-up by the pipe costs the writing service one too; a chatty service read as it
writes (often 1-8 KiB at a time) would pay that for every write. 1 ms bounds a line's
added latency to about 1 ms (2 ms at worst, with trio's millisecond timer), and fits in
the pipe: a service's pipe holds 1 MiB, 16 ms of output at 65 MB/s."""
DRAIN_AFTER_EXIT = 2.0
"""Seconds the pumps may keep reading after the group is gone (a process that escaped the
group could hold a pipe open forever; its output after that is not the service's)."""


@attrs.frozen
class ReleaseSpec:
    """How to run one release of a service."""

    service: str
    deployment: int
    command: str
    cwd: Path
    env: Mapping[str, str]
    """The whole environment of the process."""
    port: int | None
    """The private port the release listens on (given to it as PORT), if it has one."""
    grace: float
    """Seconds between SIGTERM and SIGKILL when the release is stopped."""
    generation: int = 1
    """1 for the first run of a deployment; a restart or rollback runs the next one."""
    listen_fd: int | None = None
    """A listening socket handed to the process as fd 3 (``LISTEN_FDS=1``), if any."""
    moves_out: bool = False
    """Its program moves what it starts out of its cgroup (``podman run``): see
    :attr:`dployr.engine.os.launcher.LaunchSpec.moves_out`."""
    cleanup: Callable[[int | None], Awaitable[None]] | None = attrs.field(default=None, eq=False)
    """Awaited with the exit code once each run's process has ended (a container service
    removes its container: :mod:`dployr.engine.podman`)."""

    @property
    def child_id(self) -> str:
        """The id of this release's child in the service's supervision tree: ``release-7.1``."""
        return f"release-{self.deployment}.{self.generation}"


@attrs.frozen
class Running:
    """What a started release reports: its pid, private port and deployment."""

    pid: int
    port: int | None
    deployment: int
    started_at: float
    """Wall-clock time of the start."""


BASE_ENV: Mapping[str, str] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/",
    "LANG": "C.UTF-8",
}
"""The base of every service's environment: each of these names with the daemon's value,
or this one if the daemon has none (``TZ`` too, with no default: the machine's zone)."""
FROM_DAEMON = ("PATH", "HOME", "LANG", "TZ")


def process_env(
    service: str,
    deployment: int,
    port: int | None,
    env: Mapping[str, str],
    *,
    passed: Iterable[str] = (),
) -> dict[str, str]:
    """The environment of a release or build: a clean base, then the service's own.

    Nothing else of the daemon's environment reaches a service (a cloud key or a token of
    the shell that started ``dployr up`` stays there): only PATH, HOME, LANG and TZ
    (:data:`BASE_ENV`), the variables the daemon was told to pass on by name (``passed``:
    ``dployr up --pass-env NAME``, like systemd's ``PassEnvironment=``), the service's
    variables and secrets, then ``DPLOYR_SERVICE``, ``DPLOYR_DEPLOYMENT`` and ``PORT``.
    """
    merged = dict(BASE_ENV)
    for name in (*FROM_DAEMON, *passed):
        if name in os.environ:
            merged[name] = os.environ[name]
    merged.update(env)
    merged["DPLOYR_SERVICE"] = service
    merged["DPLOYR_DEPLOYMENT"] = str(deployment)
    if port is not None:
        merged["PORT"] = str(port)
    return merged


async def pump(stream: trio.abc.ReceiveStream, on_lines: Callable[[Lines, float], None]) -> None:
    """Read a pipe in chunks until EOF, handing each batch of complete lines to ``on_lines``.

    One call per batch, with the time it was read: lines are framed in batches, never one
    by one. A last line without a newline is handed over at EOF.

    Output is gathered for up to FLUSH_WINDOW: after a batch, the pump lets the window
    pass, then takes whatever the pipe holds without waiting, and only when nothing came
    does it wait on the pipe again (and hand over what comes next at once). So a chatty
    service costs a batch and a wake-up per window, not one per write, and output after
    a quiet spell goes through with no delay. After a full read, the pipe may hold more:
    the next read follows at once. (A stream that is not a pipe's file descriptor is read
    as it comes.)
    """
    splitter = LineSplitter()
    pipe = stream if isinstance(stream, trio.lowlevel.FdStream) else None
    gather = False  # a batch was just handed over: take what comes next from the pipe
    more = False  # the last read was a full one: the pipe may hold more right now

    def hand_over(chunk: bytes | bytearray) -> None:
        nonlocal gather, more
        gather = True
        more = len(chunk) >= READ_SIZE
        lines = splitter.feed(chunk)
        if lines:
            on_lines(lines, time.time())

    while True:
        chunk: bytes | bytearray = b""
        if pipe is not None and gather:
            try:
                # Even with no window, let other tasks run between batches.
                await trio.sleep(0 if more else FLUSH_WINDOW)
            except trio.Cancelled:
                hand_over(_take_ready(pipe))  # what was written before the stop is kept
                raise
            chunk = _take_ready(pipe)
        if not chunk:
            try:
                chunk = await stream.receive_some(READ_SIZE)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                chunk = b""
            if not chunk:
                break
        hand_over(chunk)
    rest = splitter.flush()
    if rest:
        on_lines(rest, time.time())


def _take_ready(stream: trio.lowlevel.FdStream) -> bytes:
    """What the pipe holds now, up to READ_SIZE, without waiting (b"" at EOF or on an error:
    the next ``receive_some`` reports it)."""
    parts: list[bytes] = []
    size = 0
    while size < READ_SIZE and (fd := stream.fileno()) >= 0:
        try:
            data = os.read(fd, READ_SIZE - size)  # the fd is non-blocking
        except OSError:  # BlockingIOError: nothing more for now
            break
        if not data:
            break
        parts.append(data)
        size += len(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


class Release:
    """The run function of one release; ``ChildSpec(spec.child_id, Release(...).run)``."""

    def __init__(
        self,
        spec: ReleaseSpec,
        book: LogBook,
        *,
        on_spawn: Callable[[Running], None] = lambda running: None,
        on_exit: Callable[[int], None] = lambda pid: None,
    ) -> None:
        self.spec = spec
        self.book = book
        self._on_spawn = on_spawn
        self._on_exit = on_exit

    async def run(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED
    ) -> ExitReason:
        """Launch, report started, supervise the process until it exits or is stopped."""
        spec = self.spec
        try:
            process = await launcher.launch(
                launcher.LaunchSpec(spec.command, spec.cwd, spec.env, moves_out=spec.moves_out),
                listen_fd=spec.listen_fd,
            )
        except OSError as error:
            raise OSError(
                f"could not start {spec.command!r} in {spec.cwd}: {error.strerror}"
            ) from None
        running = Running(process.pid, spec.port, spec.deployment, time.time())
        # The pumps are shielded from the stop request: what the service writes while it
        # shuts down is kept. They end at EOF, or at a deadline set once the group is gone.
        pump_scope = trio.CancelScope(shield=True)
        try:
            self._on_spawn(running)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pumps, process, pump_scope)
                task_status.started(running)
                try:
                    returncode = await process.wait()
                except trio.Cancelled:
                    with ctx.shield():
                        await launcher.stop(process, spec.grace)
                    raise
                finally:
                    # Whatever is left of the group goes with its leader.
                    with trio.CancelScope(shield=True):
                        await launcher.kill_rest(process)
                    pump_scope.deadline = trio.current_time() + DRAIN_AFTER_EXIT
        finally:
            with trio.CancelScope(shield=True):
                await launcher.stop(process, 0)  # no-op if it exited; never leave a zombie
                if spec.cleanup is not None:
                    await spec.cleanup(process.returncode)
            self._on_exit(process.pid)
        return from_returncode(returncode)

    async def _pumps(self, process: launcher.ServiceProcess, scope: trio.CancelScope) -> None:
        assert process.stdout is not None
        assert process.stderr is not None
        deployment = self.spec.deployment
        append = self.book.append

        def to(stream: str) -> Callable[[Lines, float], None]:
            def on_lines(lines: Lines, ts: float) -> None:
                append(stream, lines, deployment=deployment, ts=ts)

            return on_lines

        with scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pump, process.stdout, to("stdout"))
                nursery.start_soon(pump, process.stderr, to("stderr"))
