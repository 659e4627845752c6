"""The warden: a small process that outlives the daemon only to kill its process groups.

Services must die with the daemon, even one killed with ``kill -9`` or by the OOM killer.
``PR_SET_PDEATHSIG`` would do it for each group's leader only (not its children), and it
can only be set in the child, between fork and exec: a ``preexec_fn`` (which turns
CPython's fast vfork into a fork of the whole daemon) or one more exec (``setpriv``),
which on two cores costs about a millisecond of every start and restart.

Instead the daemon starts one ``/bin/sh`` at start-up, in a session of its own, and tells
it on a pipe which process groups are live (``+ <pgid>`` when a release, a build or a
command health check starts, ``- <pgid>`` when it is gone). The shell reads until the
pipe ends, which happens when the daemon's last descriptor closes: at its exit, however
it dies. It then sends SIGKILL to every group still live, children and grandchildren
included, and to every member of the instance's cgroups, if it has them (what left its
group with ``setsid`` included: see :mod:`dployr.engine.os.cgroups`), and exits. A daemon
that stops cleanly has stopped every group first, so its warden kills nothing.

If the warden itself is killed, the next message the daemon sends finds the pipe broken:
the daemon starts a new warden and tells it every live group again. What is started in the
instant before the warden hears of it, or while no warden runs, is killed by the next
daemon when it starts (see :func:`dployr.engine.os.leftovers.kill_leftovers`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from typing import Final

from dployr.engine.os.cgroups import Cgroups
from dployr.engine.os.launcher import spawn

SCRIPT: Final = """
trap '' HUP INT TERM QUIT PIPE
set -f
groups=' '
while read -r op pgid; do
    case "$op" in
        +) groups="$groups$pgid " ;;
        -) case "$groups" in
               *" $pgid "*) groups="${groups%% $pgid *} ${groups#* $pgid }" ;;
           esac ;;
    esac
done
for pgid in $groups; do
    kill -s KILL -- "-$pgid" 2>/dev/null
done
set +f
case "$1" in
    2) echo 1 > "$2/cgroup.kill" ;;
    1) for cgroup in "$2"/*/; do
           echo FROZEN > "${cgroup}freezer.state"
           for pid in $(cat "${cgroup}cgroup.procs"); do kill -s KILL "$pid"; done
           echo THAWED > "${cgroup}freezer.state"
       done ;;
esac 2>/dev/null
if [ -n "$2" ]; then  # the killed take a moment to go; a later daemon removes what stays
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        rmdir "$2"/*/ "$2" 2>/dev/null
        [ -d "$2" ] || break  # (rmdir fails on the unmatched glob of a root left empty)
        sleep 0.1
    done
fi
"""
"""dash: ``groups`` holds the live pgids, each between spaces; ``$1`` and ``$2`` are the
instance's cgroup version and root, if it has cgroups (v2 kills the whole subtree in one
write; v1 freezes each run's cgroup, kills its members and thaws it), then removed once
empty if that takes at most a second (the kernel tells a shell of no emptiness to wait on)."""
NAME: Final = "dployr-warden"
"""The warden's ``$0``: what ``ps`` shows after ``sh -c``."""


class Warden:
    """The daemon's end of the warden: start it, tell it of groups, stop it.

    Messages are small writes to a pipe the warden drains as they come; a warden that
    cannot keep up (stopped with SIGSTOP, say) gets its messages queued here, sent with
    the next one, rather than blocking the daemon (what is still queued when the daemon
    dies is lost: the next daemon's leftover killing is the backstop). A warden that
    cannot be replaced is tried again at the next message; a service never fails to
    start or stop because of its warden.
    """

    def __init__(self) -> None:
        self.cgroups: Cgroups | None = None
        """The instance's cgroups, killed whole when the daemon dies (set before start)."""
        self._groups: set[int] = set()
        self._process: subprocess.Popen[bytes] | None = None
        self._pipe: int | None = None
        self._pending = b""
        self._wanted = False
        """Between start() and close(): a warden should be running."""
        self.starts = 0
        """How many wardens were started: more than one means one was killed."""

    @property
    def pid(self) -> int | None:
        """The running warden's pid."""
        return None if self._process is None else self._process.pid

    @property
    def groups(self) -> frozenset[int]:
        """The process groups the warden would kill now."""
        return frozenset(self._groups)

    def start(self) -> None:
        """Start a warden (again), and tell it of every live group."""
        self._discard()
        read, write = os.pipe2(os.O_CLOEXEC)
        try:
            # In a session of its own (out of reach of the terminal's Ctrl-C), in no cgroup
            # of a run: it outlives them all.
            self._process = spawn(
                [["/bin/sh", "-c", SCRIPT, NAME, *self._cgroup_args()]], stdin=read
            )
        except BaseException:
            os.close(write)
            raise
        finally:
            os.close(read)
        os.set_blocking(write, False)
        self._pipe = write
        self._wanted = True
        self.starts += 1
        self._pending = b"".join(f"+ {pgid}\n".encode() for pgid in sorted(self._groups))
        self._flush(replace=False)

    def _cgroup_args(self) -> list[str]:
        if self.cgroups is None:
            return []
        return [str(self.cgroups.version), os.fspath(self.cgroups.root)]

    def watch(self, pgid: int) -> None:
        """A process group has started: kill it if the daemon dies."""
        if pgid not in self._groups:
            self._groups.add(pgid)
            self._send(f"+ {pgid}\n".encode())

    def forget(self, pgid: int) -> None:
        """A process group is gone: its id may be reused by anyone."""
        if pgid in self._groups:
            self._groups.discard(pgid)
            self._send(f"- {pgid}\n".encode())

    def close(self) -> None:
        """The daemon is stopping: end the pipe (the warden kills what is still live)
        and reap the warden."""
        process = self._process
        self._discard()
        self._wanted = False
        self._groups.clear()  # killed by the warden now: a warden started later owes them nothing
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)  # it only kills and exits

    def _send(self, message: bytes) -> None:
        if not self._wanted:
            return  # not started, or stopped: nothing to tell
        if self._pipe is None:  # a replacement could not be started: try again now
            self._replace()
            return
        self._pending += message
        self._flush()

    def _flush(self, *, replace: bool = True) -> None:
        assert self._pipe is not None
        try:
            while self._pending:
                sent = os.write(self._pipe, self._pending)
                self._pending = self._pending[sent:]
        except BlockingIOError:
            pass  # the rest goes with the next message
        except BrokenPipeError:  # the warden was killed: a new one hears of every group
            if replace:
                self._replace()
            else:  # a warden that died at once: the next message tries again
                self._discard()

    def _replace(self) -> None:
        """Start a new warden; if that fails, the next message tries again (a service must
        not fail to start or stop because its warden could not be replaced)."""
        try:
            self.start()
        except OSError:
            self._discard()

    def _discard(self) -> None:
        """Close the pipe to the current warden and reap it if it has exited."""
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None
        if self._process is not None:
            self._process.poll()
            self._process = None
        self._pending = b""
