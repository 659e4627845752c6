"""A daemon killed with kill -9 loses no line it had read (issue 12, point 10).

A service writes numbered lines fast and notes, in a side file it syncs, how many it has
written. The daemon is killed in the middle, and started again: the history holds every
line from the first to the last one it shows, without a hole, and the lines missing at
the end are only what can be lost by design (docs/architecture.md, "Log lines"): what the
pipe held, unread, when the daemon died (the test holds a second reader of the pipe to
count it), and at most the one read the daemon was writing in that instant.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from dployr.engine.release import READ_SIZE
from tests.helpers import PYTHON, Daemon, make_repo, pids_of_service, wait_gone

pytestmark = pytest.mark.slow

PIPE_SIZE = 2**20
"""What a service's output pipe holds (engine/os/launcher.py asks the kernel for 1 MiB)."""
LINE = 64
"""Bytes of each numbered line, its newline included."""
NUMBERED = f"""\
import os, sys, time

side = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
group = 12  # 12 lines a millisecond: 12,000 lines a second
n = 0
due = time.monotonic()
while True:
    data = b"".join(b"%08d " % (n + i) + b"x" * {LINE - 10} + b"\\n" for i in range(group))
    os.write(1, data)  # less than PIPE_BUF: all of it, at once, or nothing
    n += group
    os.pwrite(side, b"%012d" % n, 0)  # only once the lines were written
    os.fsync(side)
    due += 0.001
    time.sleep(max(0.0, due - time.monotonic()))  # (read once: it moves on meanwhile)
"""


async def history_of(daemon: Daemon, name: str) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    async with daemon.client() as api:
        while True:
            after = lines[-1]["cursor"] if lines else 0
            page = await api.get(f"/services/{name}/logs", params={"after": after, "limit": 10000})
            assert page.status_code == 200, page.text
            got = page.json()["lines"]
            if not got:
                return lines
            lines += got


async def test_kill_9_loses_no_line_the_daemon_had_read(tmp_path: Path) -> None:
    side = tmp_path / "written"
    repo = make_repo(tmp_path / "app", {"numbered.py": NUMBERED})
    daemon = Daemon(tmp_path / "data")
    await daemon.start()
    async with daemon.client() as api:
        body = {"remote": {"url": str(repo)}, "run_cmd": f"{PYTHON} numbered.py {side}"}
        response = await api.post("/services/numbered/deploy", json=body)
        assert response.status_code == 202, response.text
    # Killed while the service writes 12,000 lines a second, some 30,000 lines in.
    try:
        await daemon.wait_log("numbered", "00030000 ")
    except BaseException:
        await daemon.kill9()  # not left running behind a failed test
        raise
    pids = pids_of_service("numbered")
    # A second reader of the service's output pipe keeps what the daemon had not read
    # when it died (without it, that dies with the pipe), so that it can be counted.
    unread = os.open(f"/proc/{pids[0]}/fd/1", os.O_RDONLY | os.O_NONBLOCK)
    try:
        await daemon.kill9()
        await wait_gone(pids)  # the warden kills the service with the daemon
        left = read_all(unread)
    finally:
        os.close(unread)
    written = int(side.read_bytes())

    again = Daemon(tmp_path / "data")
    await again.start()
    try:
        lines = await history_of(again, "numbered")
    finally:
        assert await again.stop() == 0
    numbers = [int(line["line"].split()[0]) for line in lines if line["stream"] == "stdout"]
    # The first run's lines, up to where the one started after the crash (if it has
    # written yet) begins again.
    kept = numbers[: numbers.index(0, 1)] if 0 in numbers[1:] else numbers
    assert kept == list(range(len(kept))), "a hole in the history"
    in_pipe = [int(line.split()[0]) for line in left.decode().splitlines()]
    print(f"written {written}, in history {len(kept)}, left in the pipe {len(in_pipe)}")
    # What the service wrote after the history's last line is what the pipe still held,
    # unread, and at most the one read the daemon was writing in the instant it died.
    after_flight = in_pipe[0] if in_pipe else max(written, len(kept))
    assert in_pipe == list(range(after_flight, after_flight + len(in_pipe)))
    in_flight = after_flight - len(kept)
    assert 0 <= in_flight * LINE <= READ_SIZE
    assert len(kept) + in_flight + len(in_pipe) >= written
    assert len(in_pipe) * LINE <= PIPE_SIZE


def read_all(fd: int) -> bytes:
    """What a pipe whose writers are all gone still holds."""
    parts = []
    while chunk := os.read(fd, 2**20):
        parts.append(chunk)
    return b"".join(parts)
