"""The one process runner: start a run (a release, a build, a health command, a git, the
warden) and stop every process it started, with one kill ladder.

Every process dployr starts is spawned by :func:`spawn`. A run (:func:`launch`,
:func:`launch_program`) is ``/bin/sh -c <run command>`` (the program itself when the
command is plain words, ``exec`` first when it is one simple command: see
:mod:`dployr.engine.os.commands`) in a new session, so it is the leader of its own process
group and has no controlling terminal, with stdin closed and stdout and stderr on pipes.
Where the instance has cgroups (:mod:`dployr.engine.os.cgroups`), it is born in a cgroup of
its own, which holds every process it starts, even one that calls ``setsid`` or
double-forks with an empty environment. Where it has none, the process is made a child
subreaper (``PR_SET_CHILD_SUBREAPER``): what its children leave behind when they exit is
adopted by it instead of by init, so while it runs, all it started is in its tree of
descendants, whatever left the group. Everything dies with the daemon through the
instance's warden (:mod:`dployr.engine.os.warden`).

The kill ladder is :func:`stop`: SIGTERM to the whole group and every member of the
cgroup, the grace, SIGKILL to all of them, and always awaiting the exit; once the leader
has exited, whatever is left is killed (:func:`kill_rest`), so no grandchild outlives the
run. :func:`run` runs one to completion, its output handed to callbacks; a cancellation
reaches the process through its ``deliver_cancel`` hook (as trio's ``run_process`` does),
:func:`kill` by default, :func:`terminate` for a grace first.

A job's run due at a known time can be spawned ahead and held before its program
(:func:`launch_held`): letting it go at its time is one write; many runs due together
are let go by one close (:class:`Barrier`).

Why one module of ~650 lines: spawn (held or not), run and the one kill ladder share the
process handle (pidfd, group, cgroup, watcher), and the release, build, health check, git
and job call sites each use several of them: one runner was the point of the seam.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import attrs
import psutil
import trio

from dployr.engine.os import cgroups, users
from dployr.engine.os.cgroups import Cgroup
from dployr.engine.os.commands import exported, plain_words, shell_argv

_F_SETPIPE_SZ = 1031
_PIPE_SIZE = 1 << 20  # fewer wake-ups for chatty services; the kernel may cap it lower
KILL_WAIT = 5.0
"""Seconds to wait for SIGKILLed processes to die (one in uninterruptible I/O may take long)."""


@attrs.frozen
class LaunchSpec:
    """What to run, where, and with which environment (the whole of it)."""

    command: str
    cwd: Path
    env: Mapping[str, str]
    moves_out: bool = False
    """The program moves whatever it starts out of its cgroup by itself (``podman run``:
    conmon and the container go to podman's own cgroups), so only it is to be held there.
    It is then spawned where the daemon is and moved into its cgroup after, from a worker
    thread, while it starts: the event loop's thread never steps into the cgroup (on cgroup
    v1 a step in and out are two writes that each wait for the kernel's RCU grace period,
    ~5 ms apiece here, before the spawn)."""


LISTEN_FD = 3
"""Where a handed-over listening socket appears in the child (systemd's SD_LISTEN_FDS_START)."""


def _grow_pipe(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_SIZE)


class ServiceProcess:
    """A child process: its pid, its output pipes as trio streams, its cgroup, and its exit.

    The exit is awaited through a pidfd, so no thread waits for it.
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        stdout: int,
        stderr: int,
        cgroup: Cgroup | None = None,
    ) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.cgroup = cgroup
        """Where the process and everything it starts live (None: its process group only)."""
        self.stdout = trio.lowlevel.FdStream(stdout)
        self.stderr = trio.lowlevel.FdStream(stderr)
        self.returncode: int | None = None
        self._pidfd: int | None = os.pidfd_open(self.pid)
        self._exited = trio.Event()
        self._waiting = False

    async def wait(self) -> int:
        """Wait for the process to exit; its return code (negative: killed by a signal)."""
        if self.returncode is not None:
            return self.returncode
        if self._waiting:  # another task is already on the pidfd
            await self._exited.wait()
            assert self.returncode is not None
            return self.returncode
        self._waiting = True
        assert self._pidfd is not None
        try:
            await trio.lowlevel.wait_readable(self._pidfd)
        finally:
            self._waiting = False
        # The pidfd is readable: the child is a zombie, so this reaps it without waiting.
        _, status = os.waitpid(self.pid, os.WNOHANG)  # noqa: ASYNC222
        self.returncode = os.waitstatus_to_exitcode(status)
        self._popen.returncode = self.returncode  # so Popen knows it was reaped
        os.close(self._pidfd)
        self._pidfd = None
        self._exited.set()
        return self.returncode


def _socket_at_fd3(listen_fd: int) -> None:  # pragma: no cover - runs in the child
    # The shell cannot name a descriptor above 9, so the move to fd 3 happens here.
    os.dup2(listen_fd, LISTEN_FD)


_PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


def _in_child(listen_fd: int | None) -> None:  # pragma: no cover - runs in the child
    """Between fork and exec, where no cgroup holds the process: make it the subreaper of
    its descendants (kept across exec), and hand over the socket if there is one."""
    _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if listen_fd is not None:
        _socket_at_fd3(listen_fd)


async def launch(spec: LaunchSpec, *, listen_fd: int | None = None) -> ServiceProcess:
    """Start ``spec`` as the leader of a new session, its output on pipes.

    With ``listen_fd``, that socket is the child's fd 3 and ``LISTEN_FDS=1`` says so.
    The fork happens here, on the trio thread: without a ``preexec_fn`` it is a vfork
    (well under a millisecond) and no thread is involved. A command of plain words whose
    program cannot be run (missing, not executable) is started again through the shell,
    so that it fails as it would there: exit status 127 or 126 and the shell's message.
    The process is born in a new cgroup of the instance named by ``DPLOYR_INSTANCE`` in
    its environment, if that instance has cgroups; it runs as the user of the service
    named by ``DPLOYR_SERVICE``, if the instance gives services users of their own
    (:mod:`dployr.engine.os.users`), with that service's folder as its HOME.
    """
    await trio.lowlevel.checkpoint()  # before the spawn: a cancellation leaks nothing
    argvs, env, ids = await _prepare(spec, listen_fd)
    label = spec.env.get("DPLOYR_SERVICE", "run")
    if not spec.moves_out:
        return _start(argvs, cwd=spec.cwd, env=env, label=label, listen_fd=listen_fd, ids=ids)
    started = _spawn_run(
        argvs, cwd=spec.cwd, env=env, label=label, listen_fd=listen_fd, ids=ids, adopt=True
    )
    return ServiceProcess(*await trio.to_thread.run_sync(_adopted, started))


async def _prepare(
    spec: LaunchSpec, listen_fd: int | None
) -> tuple[list[list[str]], dict[str, str], tuple[int, int] | None]:
    """The argv to try in turn, the whole environment and the user of a run of ``spec``."""
    # What the shell would pass on: names it can export, and its PWD (dash keeps one that
    # names its working dir). A program started without a shell sees the same.
    env = exported(spec.env)
    env["PWD"] = os.fspath(spec.cwd)
    if listen_fd is not None:
        env["LISTEN_FDS"] = "1"
    owners = users.of_instance(env.get("DPLOYR_INSTANCE"))
    service = env.get("DPLOYR_SERVICE")
    ids = None
    if owners is not None and service is not None:
        ids = await trio.to_thread.run_sync(owners.prepare, service, spec.cwd)
        env["HOME"] = os.fspath(owners.home(service))
    words = plain_words(spec.command)
    argvs = [words, shell_argv(spec.command)] if words is not None else [shell_argv(spec.command)]
    return argvs, env, ids


_HOLD = (
    'read -r {name} <&3; exec 3<&-; read -r {name} || exit 125; export {name}; exec "$@" </dev/null'
)
"""The shell's part of a held run: wait until its barrier opens (the end of fd 3), then
for the line that lets it go (the value of one variable, on stdin), then become the run's
program; end without running it if the line never comes (the daemon died: the write ends
of both pipes closed)."""
HELD_UNRELEASED = 125
"""The exit status of a held run that was never let go."""


class Barrier:
    """What held runs let go at the same instant wait on together (:func:`launch_held`):
    :meth:`open` wakes them all with one ``close``, the end of a pipe each of them reads
    (a write would wake the readers of a pipe one after another).

    Each run is given its value first (:meth:`Held.go`, a write to a pipe of its own that
    no one reads yet: it wakes nothing), then the barrier is opened; so a hundred runs
    are let go by one wake-up, instead of each write taking a core from the daemon while
    it still has the next ones to write.
    """

    def __init__(self) -> None:
        self._read: int | None
        self._write: int | None
        self._read, self._write = os.pipe2(os.O_CLOEXEC)

    @property
    def opened(self) -> bool:
        """Whether it was opened."""
        return self._write is None

    def reader(self) -> int:
        """A new descriptor of its read end, for one spawn (closed by whoever takes it)."""
        if self._read is None:
            raise ValueError("the barrier was opened: it holds no one any more")
        return os.dup(self._read)  # close-on-exec, as every descriptor Python makes

    def open(self) -> None:
        """Let every run waiting on it go on (once; then a no-op)."""
        for fd in (self._write, self._read):
            if fd is not None:
                os.close(fd)
        self._read = self._write = None


class Held:
    """A run started ahead of time and held before its program (:func:`launch_held`):
    :meth:`go` lets it run, :meth:`discard` ends it unrun."""

    def __init__(self, process: ServiceProcess, gate: int, barrier: Barrier, own: bool) -> None:
        self.process = process
        self._gate: int | None = gate
        """The write end of the held shell's stdin: one line lets it go."""
        self.barrier = barrier
        """What it waits on before its line (opened by :meth:`go` if it is its own)."""
        self._own = own
        self._let_go = False

    def go(self, value: str) -> None:
        """Give the run the value of the held variable (a single line): it starts its
        program now, or as soon as its barrier opens if that one is shared. Costs one
        write (and a close): nothing is spawned or moved here."""
        assert self._gate is not None, "a held run is let go once"
        gate, self._gate = self._gate, None
        self._let_go = True
        try:
            os.write(gate, f"{value}\n".encode())  # a pipe of 64 KiB: never blocks here
        except BrokenPipeError:
            pass  # it was killed meanwhile: its exit says so to whoever waits for it
        finally:
            os.close(gate)
        if self._own:
            self.barrier.open()

    async def discard(self) -> None:
        """End the run without starting its program (and remove its cgroup); one already
        let go is stopped at once."""
        if self._gate is not None:
            os.close(self._gate)  # the shell reads the end of its input: it exits 125
            self._gate = None
        if self._own:
            self.barrier.open()
        with trio.CancelScope(shield=True):
            if self.barrier.opened and not self._let_go:  # it exits at once (unless stalled)
                with trio.move_on_after(KILL_WAIT):
                    await self.process.wait()
            # (else it waits for a shared barrier, or it runs: it is stopped now)
            await stop(self.process, 0)  # its cgroup removed (and killed, if still there)
            await self.process.stdout.aclose()
            await self.process.stderr.aclose()


async def launch_held(spec: LaunchSpec, *, name: str, barrier: Barrier | None = None) -> Held:
    """Start a run of ``spec`` now but hold it before its program runs: it waits for
    :meth:`Held.go`, which gives the environment variable ``name`` its value, and for
    ``barrier`` to open, if given (else it has one of its own, opened by the ``go``).

    For a run due at a known time (a job's): the costly parts of a start, the spawn and
    the step into its cgroup, happen before that time, in a worker thread (they do not
    hold up the event loop, and several runs' kernel waits overlap), and starting it at
    its time is one write, or for many runs due together, one write each and one close.
    What runs is ``/bin/sh -c <hold> sh <the run's argv>``: a shell that waits for the
    end of its fd 3 (the barrier), reads one line on its stdin, then execs the program
    (stdin then ``/dev/null``, as for :func:`launch`); its pid, group and session are
    the run's. The process is moved into its cgroup while the shell waits, before the
    program can run, so all the program starts is in it (the daemon itself is not
    moved: that is what lets holds be made in several threads at once). If the line
    never comes, the shell exits with :data:`HELD_UNRELEASED`. A program that cannot be
    run fails as the shell's ``exec`` says (127 or 126).
    """
    if not name.isidentifier() or not name.isascii():
        raise ValueError(f"not a variable name: {name!r}")
    await trio.lowlevel.checkpoint()
    own = barrier is None
    shared = Barrier() if barrier is None else barrier
    argvs, env, ids = await _prepare(spec, None)
    argv = ["/bin/sh", "-c", _HOLD.format(name=name), "sh", *argvs[0]]
    gate_read, gate_write = os.pipe2(os.O_CLOEXEC)
    waits_on = shared.reader()
    label = spec.env.get("DPLOYR_SERVICE", "run")
    try:
        started = await trio.to_thread.run_sync(
            lambda: _adopted(
                _spawn_run(
                    [argv],
                    cwd=spec.cwd,
                    env=env,
                    label=label,
                    listen_fd=waits_on,  # its fd 3
                    ids=ids,
                    stdin=gate_read,
                    adopt=True,
                )
            )
        )
    except BaseException:
        os.close(gate_write)
        if own:
            shared.open()
        raise
    finally:
        os.close(gate_read)
        os.close(waits_on)
    return Held(ServiceProcess(*started), gate_write, shared, own)


async def launch_program(argv: list[str], env: Mapping[str, str], *, label: str) -> ServiceProcess:
    """Start the program ``argv`` (no shell) as :func:`launch` starts a command: a new
    session, its own cgroup (``label`` names it), stdin closed, output on pipes."""
    await trio.lowlevel.checkpoint()
    return _start([argv], cwd=None, env=dict(env), label=label, listen_fd=None)


_Started = tuple[subprocess.Popen[bytes], int, int, Cgroup | None]
"""A spawned run: the process, its stdout and stderr read ends, its cgroup."""


def _start(
    argvs: list[list[str]],
    *,
    cwd: Path | None,
    env: dict[str, str],
    label: str,
    listen_fd: int | None,
    ids: tuple[int, int] | None = None,
) -> ServiceProcess:
    """Spawn a run: the first of ``argvs`` that can be started (the last one's error if
    none), output on pipes, in a cgroup of its own where the instance has them, as the user
    and group ``ids`` with no other group, if given."""
    return ServiceProcess(
        *_spawn_run(argvs, cwd=cwd, env=env, label=label, listen_fd=listen_fd, ids=ids)
    )


def _spawn_run(
    argvs: list[list[str]],
    *,
    cwd: Path | None,
    env: dict[str, str],
    label: str,
    listen_fd: int | None,
    ids: tuple[int, int] | None = None,
    stdin: int = subprocess.DEVNULL,
    adopt: bool = False,
) -> _Started:
    """:func:`_start`'s spawn: the process, its stdout and stderr read ends, its cgroup.
    ``listen_fd`` becomes the child's fd 3 (a listening socket, or a held run's barrier).
    Blocking, and safe in a worker thread with ``adopt``: the process is then spawned
    where the daemon is, for the caller to move into its cgroup (:func:`_adopted`; only
    for a process that cannot start others yet, a held one, or one that moves what it
    starts out by itself), instead of born there by the spawning thread stepping in
    (which on cgroup v2 moves the whole daemon)."""
    tree = cgroups.of_instance(env.get("DPLOYR_INSTANCE"))
    cgroup = tree.create(label) if tree is not None else None
    out_read, out_write = os.pipe2(os.O_CLOEXEC)
    err_read, err_write = os.pipe2(os.O_CLOEXEC)
    for fd in (out_read, err_read):
        _grow_pipe(fd)
    # Only a handed-over socket, or a process no cgroup holds, needs code in the child (a
    # plain fork, slower than the vfork every other spawn gets); dup2 and prctl are
    # async-signal-safe.
    child_setup = (
        functools.partial(_in_child, listen_fd)
        if cgroup is None
        else functools.partial(_socket_at_fd3, listen_fd)
        if listen_fd is not None
        else None
    )
    popen = None
    try:
        popen = spawn(
            argvs,
            cwd=cwd,
            env=env,
            stdin=stdin,
            stdout=out_write,
            stderr=err_write,
            cgroup=None if adopt else cgroup,
            ids=ids,
            pass_fds=(LISTEN_FD,) if listen_fd is not None else (),
            child_setup=child_setup,
        )
    except BaseException:
        _undo(None, out_read, err_read, cgroup)
        raise
    finally:
        os.close(out_write)
        os.close(err_write)
    return popen, out_read, err_read, cgroup


def _adopted(started: _Started) -> _Started:
    """Move a process spawned with ``adopt`` into its cgroup (blocking: a worker thread's
    call). If the cgroup refuses it, it is killed and nothing of it is left."""
    popen, out_read, err_read, cgroup = started
    if cgroup is not None:
        try:
            cgroup.adopt(popen.pid)
        except BaseException:
            _undo(popen, out_read, err_read, cgroup)
            raise
    return started


def _undo(
    popen: subprocess.Popen[bytes] | None, out_read: int, err_read: int, cgroup: Cgroup | None
) -> None:
    if popen is not None:  # its cgroup refused it: end it before it goes on
        popen.kill()
        popen.wait()
    os.close(out_read)
    os.close(err_read)
    if cgroup is not None:
        cgroup.remove()


DEVNULL: int = subprocess.DEVNULL


def spawn(
    argvs: Sequence[Sequence[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: int = DEVNULL,
    stdout: int = DEVNULL,
    stderr: int = DEVNULL,
    cgroup: Cgroup | None = None,
    ids: tuple[int, int] | None = None,
    pass_fds: Sequence[int] = (),
    child_setup: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Start the first of ``argvs`` that can be started (the last one's error if none) as
    the leader of a new session: the only place dployr creates a process.

    ``cgroup``: born in it (the spawning thread steps in and out around the fork).
    ``ids``: as that user and group, with no other group and the service umask.
    ``child_setup`` runs in the child between fork and exec (it costs the vfork).
    """
    uid, gid = ids if ids is not None else (None, None)

    def one(argv: Sequence[str]) -> subprocess.Popen[bytes]:
        with cgroup.entered() if cgroup is not None else contextlib.nullcontext():
            return subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,  # its own group, out of reach of the terminal
                user=uid,
                group=gid,
                extra_groups=[] if uid is not None else None,
                umask=users.SERVICE_UMASK if uid is not None else -1,
                pass_fds=pass_fds,
                preexec_fn=child_setup,  # noqa: PLW1509 -- async-signal-safe, see _start
            )

    for index, argv in enumerate(argvs):
        try:
            return one(argv)
        except OSError:
            if index == len(argvs) - 1:
                raise  # the same error again if it is the cwd
    raise ValueError("nothing to spawn")


def signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to a process group; False if the group no longer exists."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:  # a reused id that is not ours: leave it alone
        return False
    return True


def group_members(pgid: int) -> list[int]:
    """The pids in process group ``pgid`` (read from /proc; the kernel has no direct call)."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    members.append(int(entry.name))
            except OSError:  # gone meanwhile, or not ours to ask about
                continue
    return members


async def kill_group(pgid: int, *, wait: float = KILL_WAIT) -> None:
    """SIGKILL a whole process group and await the death of each member.

    The members are not all our children (a grandchild whose parent exited belongs to
    init), so their exits are awaited through pidfds, which work for any process: no
    grandchild is still alive when this returns.
    """
    fds = _pidfds(group_members(pgid))
    try:
        signal_group(pgid, signal.SIGKILL)
        with trio.move_on_after(wait):
            for fd in fds:
                await trio.lowlevel.wait_readable(fd)
    finally:
        for fd in fds:
            os.close(fd)


async def kill_cgroup(cgroup: Cgroup, *, wait: float = KILL_WAIT) -> None:
    """SIGKILL every member of a cgroup and await each one's death (those born while it
    was being killed included)."""
    killed: set[int] = set()
    with trio.move_on_after(wait):
        while pids := [pid for pid in cgroup.members() if pid not in killed]:
            fds = _pidfds(pids)
            try:
                cgroup.kill()
                for fd in fds:
                    await trio.lowlevel.wait_readable(fd)
            finally:
                for fd in fds:
                    os.close(fd)
            killed.update(pids)


async def kill_rest(process: ServiceProcess, *, wait: float = KILL_WAIT) -> None:
    """SIGKILL whatever ``process`` started that is still alive: its process group and
    every member of its cgroup (without one: its descendants). Awaits each death."""
    if process.cgroup is not None:
        await kill_group(process.pid, wait=wait)
        await kill_cgroup(process.cgroup, wait=wait)
        return
    pids = _members(process)  # its descendants only while it is unreaped: the pid is ours
    fds = _pidfds(pids)
    try:
        signal_group(process.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with trio.move_on_after(wait):
            for fd in fds:
                await trio.lowlevel.wait_readable(fd)
    finally:
        for fd in fds:
            os.close(fd)


def descendants(pid: int) -> list[int]:
    """The live descendants of ``pid`` (a subreaper's include what its children left);
    only for a pid that cannot have been reused (an unreaped child of ours)."""
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _pidfds(pids: list[int]) -> list[int]:
    return cgroups.pidfds(pids)


def _members(process: ServiceProcess) -> list[int]:
    """Every process ``process`` started, itself excepted: its group and its cgroup."""
    pgid = process.pid
    found = set(group_members(pgid))
    if process.cgroup is not None:
        found.update(process.cgroup.members())
    elif process.returncode is None:
        found.update(descendants(pgid))
    found.discard(pgid)
    return sorted(found)


async def stop(process: ServiceProcess, grace: float) -> int:
    """SIGTERM to the group and the cgroup, wait up to ``grace`` s, SIGKILL to both; await
    the exit.

    The grace is for all of them: a server behind ``sh -c`` (or a master and its workers)
    gets its time to finish the requests in flight even once the shell is gone. Returns
    the leader's return code. The final kill and wait are shielded, so a caller that is
    cancelled meanwhile still never leaves a zombie or a live process behind; the cgroup
    is then removed.
    """
    pgid = process.pid  # the leader of a new session: its pid is the group id
    # Who it started, held by pidfds: signalled even after the leader is reaped.
    members = _pidfds(_members(process)) if process.returncode is None else []
    try:
        if process.returncode is None:
            signal_group(pgid, signal.SIGTERM)
            _signal_all(members, signal.SIGTERM)  # those that left the group too
            with trio.move_on_after(grace):
                await process.wait()
                for fd in members:
                    await trio.lowlevel.wait_readable(fd)
    finally:
        with trio.CancelScope(shield=True):
            try:
                _signal_all(members, signal.SIGKILL)
                await kill_rest(process)
                with trio.move_on_after(KILL_WAIT):
                    for fd in members:
                        await trio.lowlevel.wait_readable(fd)
            finally:
                for fd in members:
                    os.close(fd)
            returncode = await process.wait()
            if process.cgroup is not None:
                process.cgroup.remove()
    return returncode


def _signal_all(pidfds: list[int], signum: int) -> None:
    for fd in pidfds:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(fd, signum)


DeliverCancel = Callable[[ServiceProcess], Awaitable[object]]
"""What :func:`run` does to a process still running when the run is cancelled."""


async def kill(process: ServiceProcess) -> None:
    """SIGKILL at once to all ``process`` started (the default ``deliver_cancel``)."""
    await stop(process, 0)


def terminate(grace: float) -> DeliverCancel:
    """A ``deliver_cancel``: SIGTERM, up to ``grace`` s to exit (to remove its lock files,
    say), then SIGKILL; all of it to everything the process started."""
    return functools.partial(stop, grace=grace)


class Watcher(Protocol):
    """Who must know of a run's process group while it lives (the warden)."""

    def watch(self, pgid: int) -> None: ...

    def forget(self, pgid: int) -> None: ...


@attrs.frozen
class Program:
    """A program to run without a shell (as :func:`launch_program` starts it)."""

    argv: Sequence[str]
    env: Mapping[str, str]
    label: str
    """Names its cgroup, for a reader of /sys."""


async def run(
    what: LaunchSpec | Program,
    *,
    on_stdout: Callable[[bytes], None] | None = None,
    on_stderr: Callable[[bytes], None] | None = None,
    deliver_cancel: DeliverCancel = kill,
    watcher: Watcher | None = None,
) -> int:
    """Run ``what`` to its exit and return its return code (negative: killed by a signal).

    Its output goes to the callbacks chunk by chunk as it comes (dropped without one),
    read until both pipes end. Once the process has exited, whatever it left running is
    killed and awaited (so the pipes end), and its cgroup removed. If the run is
    cancelled while the process runs, ``deliver_cancel(process)`` is awaited, shielded,
    before the cancellation goes on (trio's ``run_process`` has the same hook).
    ``watcher`` hears of its process group from its spawn until it is stopped.
    """
    if isinstance(what, Program):
        process = await launch_program(list(what.argv), what.env, label=what.label)
    else:
        process = await launch(what)
    if watcher is not None:
        watcher.watch(process.pid)
    returncode: int | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain, process.stdout, on_stdout)
            nursery.start_soon(_drain, process.stderr, on_stderr)
            await process.wait()
            # What it left running holds the pipes open: it ends with the program (and
            # its cgroup is removed).
            returncode = await stop(process, 0)
    except BaseException:
        if process.returncode is None:
            with trio.CancelScope(shield=True):
                await deliver_cancel(process)
        raise
    finally:
        with trio.CancelScope(shield=True):
            if returncode is None:  # cancelled, or a callback failed
                await stop(process, 0)
            await process.stdout.aclose()
            await process.stderr.aclose()
        if watcher is not None:
            watcher.forget(process.pid)
    return returncode


async def _drain(stream: trio.abc.ReceiveStream, into: Callable[[bytes], None] | None) -> None:
    async for chunk in stream:
        if into is not None:
            into(bytes(chunk))
