"""What a service or a user wrote is shown on the operator's terminal, never obeyed by it.

A service prints escape sequences (a window title, a screen clear, DCS/APC/PM strings, the
8-bit CSI), a lone ESC, BEL, backspaces, a carriage return that would overprint the line,
and a bidirectional override. ``dployr logs`` (plain, ``--tail``, ``--follow``, ``--json``),
the build output of ``dployr deploy``, ``dployr get``/``settings`` (description, commands),
``env list`` and error lines must show each of them as text, on a pipe and on a TTY.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import tty
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import trio
from trio_websocket import open_websocket_url

from tests.cli.conftest import WAIT, Daemon
from tests.helpers import PYTHON

pytestmark = pytest.mark.slow

HOSTILE = (
    "\x1b]0;TITLE\x07 \x1b[2J\x1b[H \x1bP1$qm\x1b\\ \x1b_apc\x1b\\ \x1b^pm\x1b\\ "
    "\x9b31m c1 \x1b lone \x07 bell \x08\x08 back \u202e rtl \x7f del \rover"
)
"""One line of everything a terminal would act on."""

SHOWN = "^[]0;TITLE^G ^[[2J^[[H ^[P1$qm^[\\ ^[_apc^[\\ ^[^pm^[\\ \\x9b31m c1 ^[ lone ^G bell"
"""How the start of it must look: every control as visible text."""

PRINT_HOSTILE = f"import sys\nsys.stdout.write({HOSTILE!r} + '\\n')\nsys.stdout.flush()\n"


def assert_inert(output: bytes) -> None:
    """Nothing in ``output`` is a control character a terminal would act on."""
    text = output.decode("utf-8")  # also refuses a raw 8-bit C1 byte
    acting = {ch for ch in text if (ord(ch) < 0x20 and ch not in "\n\t") or 0x7F <= ord(ch) < 0xA0}
    acting |= {ch for ch in text if ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068"}
    assert not acting, (sorted(acting), output)


DEPLOY_OUTPUT: dict[str, str] = {}
"""What ``dployr deploy`` printed, by daemon URL."""


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    """A running daemon with one service that printed the hostile line while built and run."""
    up = await Daemon.start(tmp_path / "data")
    try:
        app = tmp_path / "app"
        app.mkdir()
        (app / "build.py").write_text(PRINT_HOSTILE)
        (app / "worker.py").write_text(PRINT_HOSTILE + "import signal\nsignal.pause()\n")
        deploy = await up.cli(
            "deploy",
            "--min-uptime",
            "300ms",
            "--name",
            "noisy",
            "--remote",
            str(app),
            "--build-cmd",
            f"{PYTHON} build.py",
            "--run-cmd",
            f"{PYTHON} worker.py",
            "--description",
            "\x1b]0;DESCRIPTION\x07described",
        )
        assert (deploy.code, deploy.err) == (0, ""), deploy
        DEPLOY_OUTPUT[up.url] = deploy.out
        await wait_for_output(up, "noisy", "TITLE")
        yield up
    finally:
        with trio.CancelScope(shield=True):
            code, _ = await up.stop()
    assert code == 0


async def wait_for_output(daemon: Daemon, name: str, text: str) -> None:
    """Wait until a line holding ``text`` is in the service's log history."""
    url = daemon.url.replace("http://", "ws://") + f"/api/v1/services/{name}/logs/stream?cursor=0"
    headers = [(b"Authorization", f"Bearer {daemon.token}".encode())]
    with trio.fail_after(WAIT):
        async with open_websocket_url(url, extra_headers=headers) as feed:
            while True:
                message = json.loads(await feed.get_message())
                if any(text in line["line"] for line in message.get("lines", ())):
                    return  # the lines that came together, in one logs message


async def on_a_tty(
    daemon: Daemon,
    args: Sequence[str],
    until: bytes | None = None,
    printing: trio.Event | None = None,
) -> bytes:
    """Run the CLI with stdout and stderr on a terminal; all it wrote there.

    ``printing`` is set once it has printed a first line. With ``until``, it is interrupted
    (Ctrl-C) once that text has appeared after that first line.
    """
    main, terminal = pty.openpty()
    tty.setraw(terminal)  # no \n -> \r\n translation: the bytes are the CLI's own
    try:
        process = await trio.lowlevel.open_process(
            [PYTHON, "-m", "dployr", *args],
            stdin=subprocess.DEVNULL,
            stdout=terminal,
            stderr=terminal,
            env=daemon.env,
        )
    finally:
        os.close(terminal)
    seen = b""
    first_line: int | None = None
    try:
        with trio.fail_after(WAIT):
            while True:
                await trio.lowlevel.wait_readable(main)
                try:
                    chunk = os.read(main, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
                if first_line is None and b"\n" in seen:
                    first_line = seen.index(b"\n") + 1
                    if printing is not None:
                        printing.set()
                if until is not None and first_line is not None and until in seen[first_line:]:
                    process.send_signal(signal.SIGINT)
                    until = None
            await process.wait()
    finally:
        os.close(main)
        with trio.CancelScope(shield=True):
            process.kill()
            await process.wait()
    return seen


async def test_build_output_is_shown_not_obeyed(daemon: Daemon) -> None:
    output = DEPLOY_OUTPUT[daemon.url]
    assert_inert(output.encode())
    assert "    " + SHOWN in output  # the build output, as `dployr deploy` showed it
    assert "==> building: " in output


async def test_logs_are_shown_not_obeyed(daemon: Daemon) -> None:
    for args in (["logs", "noisy"], ["logs", "noisy", "--tail", "3"], ["logs", "noisy", "--build"]):
        out = await daemon.ok(*args)
        assert_inert(out.encode())
        assert SHOWN in out, args
        assert "\\u202e rtl ^? del" in out

    for args in (["logs", "noisy"], ["logs", "noisy", "--tail", "3"]):
        seen = await on_a_tty(daemon, args)
        assert_inert(seen)
        assert SHOWN.encode() in seen

    # JSON keeps the value exactly, in escapes a terminal does not act on.
    out = await daemon.ok("logs", "noisy", "--json")
    assert_inert(out.encode())
    lines = [json.loads(line)["line"] for line in out.splitlines()]
    assert any(line.startswith(HOSTILE[:20]) for line in lines), lines


async def test_a_followed_log_is_shown_not_obeyed(daemon: Daemon) -> None:
    followed: list[bytes] = []
    printing = trio.Event()

    async def follow() -> None:
        # Its last line of history shows that it has its cursor: the hostile line that the
        # restart prints then arrives live, through the feed.
        command = ["logs", "noisy", "--follow", "--tail", "1"]
        followed.append(await on_a_tty(daemon, command, b"TITLE", printing))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow)
        with trio.fail_after(WAIT):
            await printing.wait()
        await daemon.ok("service", "restart", "noisy")
    assert_inert(followed[0])
    assert SHOWN.encode() in followed[0].split(b"\n", 1)[1]


async def test_settings_descriptions_and_variables_are_shown_not_obeyed(daemon: Daemon) -> None:
    await daemon.ok("env", "set", "noisy", "GREETING=\x1b[2J\x1b]0;ENV\x07hi\rthere")
    for args in (
        ["get", "noisy"],
        ["service", "status", "noisy"],
        ["settings", "noisy"],
        ["env", "list", "noisy"],
        ["deployments", "noisy"],
    ):
        for seen in ((await daemon.ok(*args)).encode(), await on_a_tty(daemon, args)):
            assert_inert(seen)
    assert "^[]0;DESCRIPTION^Gdescribed" in await daemon.ok("get", "noisy")
    assert "GREETING=^[[2J^[]0;ENV^Ghi^Mthere" in await daemon.ok("env", "list", "noisy")


async def test_an_error_line_is_shown_not_obeyed(daemon: Daemon, tmp_path: Path) -> None:
    hostile = tmp_path / "\x1b]0;PWNED\x07\x1b[2J.txt"
    result = await daemon.cli("deploy", "--blueprint", str(hostile))
    line = result.one_line_error()
    assert_inert(result.err.encode())
    assert "^[]0;PWNED^G^[[2J.txt must end in" in line
    seen = await on_a_tty(daemon, ["deploy", "--blueprint", str(hostile)])
    assert_inert(seen)
