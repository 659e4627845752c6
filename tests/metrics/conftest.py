"""Real process groups for the sampler to read: Python children that idle, burn or allocate.

Each child is started as the leader of its own process group, as a release is, and says
"ready" on stdout (with any pids it wants the test to know) once it is in the state the
test measures. Every child sleeps or burns for a bounded time only, and every group is
killed, and its members' exits awaited, when the test ends.
"""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio

from dployr.engine.os.launcher import kill_group
from tests.helpers import PYTHON

WAIT = 20.0
"""A guard on every wait: a test that waits longer than this has failed."""
LIFETIME = 120
"""Seconds a test child lives at most, should a test run leave one behind."""

IDLE = f"""
import sys, time
print("ready", flush=True)
time.sleep({LIFETIME})
"""

BURN = f"""
import time
print("ready", flush=True)
end = time.monotonic() + {LIFETIME}
while time.monotonic() < end:
    pass
"""

ALLOCATE = f"""
import time
data = b"x" * (100 * 2**20)  # written, so resident: 100 MiB
print("ready", flush=True)
time.sleep({LIFETIME})
"""

# A leader with a child (four threads) and a grandchild whose parent exited, so it was
# reparented out of the tree; the grandchild burns CPU if BURN_GRANDCHILD. On "kill" the
# leader kills its child, reaps it and says "killed".
_TREE = f"""
import os, subprocess, sys, time

BURN_GRANDCHILD = BURN
child = subprocess.Popen(
    [sys.executable, "-c",
     "import threading, time\\n"
     "for _ in range(3):\\n"
     "    threading.Thread(target=time.sleep, args=({LIFETIME},), daemon=True).start()\\n"
     "print('up', flush=True)\\n"
     "time.sleep({LIFETIME})\\n"],
    stdout=subprocess.PIPE,
)
child.stdout.readline()
r, w = os.pipe()
middle = os.fork()
if middle == 0:
    if os.fork() == 0:
        os.close(r)
        os.write(w, b"%d" % os.getpid())
        os.close(w)
        end = time.monotonic() + {LIFETIME}
        while BURN_GRANDCHILD and time.monotonic() < end:
            pass
        time.sleep(max(0, end - time.monotonic()))
        os._exit(0)
    os._exit(0)
os.close(w)
os.waitpid(middle, 0)
grandchild = int(os.read(r, 32))
print("ready", child.pid, grandchild, flush=True)
for line in sys.stdin:
    if line.strip() == "kill":
        child.kill()
        child.wait()
        print("killed", flush=True)
time.sleep({LIFETIME})
"""


def tree(*, burn: bool = False) -> str:
    """The code of a process tree (see above), its grandchild burning CPU or idle."""
    return _TREE.replace("BURN_GRANDCHILD = BURN", f"BURN_GRANDCHILD = {burn}")


# A leader that, on "spawn", starts a child that uses exactly half a second of CPU time,
# says "burnt" (on the same stdout) and idles.
SPAWNER = f"""
import subprocess, sys, time
print("ready", flush=True)
for line in sys.stdin:
    subprocess.Popen([sys.executable, "-c",
        "import time\\n"
        "while time.process_time() < 0.5: pass\\n"
        "print('burnt', flush=True)\\n"
        "time.sleep({LIFETIME})\\n"])
time.sleep({LIFETIME})
"""


class Child:
    """A child process group under test, talking over its stdin and stdout."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buffer = b""

    @property
    def pgid(self) -> int:
        """The group's id: the leader's pid."""
        return self.process.pid

    async def line(self) -> str:
        """The next line the child writes."""
        assert self.process.stdout is not None
        with trio.fail_after(WAIT):
            while b"\n" not in self._buffer:
                chunk = await self.process.stdout.receive_some()
                if not chunk:
                    raise AssertionError(f"the child exited: {self._buffer!r}")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    async def ready(self) -> list[int]:
        """Wait for "ready"; return the pids it names."""
        words = (await self.line()).split()
        assert words[0] == "ready", words
        return [int(word) for word in words[1:]]

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(line.encode() + b"\n")

    async def kill(self) -> None:
        """Kill the whole group and await every member's exit."""
        with trio.CancelScope(shield=True):
            await kill_group(self.pgid)
            await self.process.wait()


Spawn = Callable[[str], Awaitable[Child]]


@pytest.fixture
async def spawn() -> AsyncIterator[Spawn]:
    """Start Python code as a new process group; every group is killed at the end."""
    children: list[Child] = []

    async def start(code: str) -> Child:
        process = await trio.lowlevel.open_process(
            [PYTHON, "-c", textwrap.dedent(code)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        child = Child(process)
        children.append(child)
        return child

    try:
        yield start
    finally:
        for child in children:
            await child.kill()
