"""``dployr up``: where it says it is, its token, one daemon per data dir, a clean stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
from pathlib import Path

import httpx
import pytest
import trio

from dployr.daemon.paths import default_data_dir
from tests.cli.conftest import (
    WAIT,
    Daemon,
    clean_env,
    finish,
    free_port,
    http_get,
    run_cli,
    start_up,
)
from tests.helpers import PYTHON, pids_of_service

pytestmark = pytest.mark.slow


def test_the_data_dir_defaults_to_dployr_home_then_the_home_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DPLOYR_HOME", raising=False)
    # As another user than root (the user id is all the rule reads).
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert default_data_dir() == tmp_path / ".local" / "share" / "dployr"
    # As root: a folder its services' users can reach, not root's closed home.
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_data_dir() == Path("/var/lib/dployr")
    monkeypatch.setenv("DPLOYR_HOME", str(tmp_path / "elsewhere"))
    assert default_data_dir() == tmp_path / "elsewhere"


async def test_up_says_where_it_is_and_keeps_only_a_hash_of_its_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    process, banner = await start_up(data, env=clean_env(DPLOYR_HOME=str(data)))
    try:
        assert len(banner) == 4, banner
        assert banner[0].startswith("dployr ")
        url = banner[0].split(" is up: ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        assert banner[1] == f"a new admin token is in {data / 'admin-token'}"
        assert str(data) in banner[2]
        # The helpers start it with --shared-user: services run as its user, and it says so.
        assert banner[3].startswith("services run as root, dployr's own user: ")
        token_file = data / "admin-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        for name in ("dployr.db", "dployr.db-wal"):
            path = data / name
            if path.exists():
                assert token.encode() not in path.read_bytes(), name
        endpoint = json.loads((data / "daemon.json").read_text())
        assert endpoint["url"] == url
        assert endpoint["pid"] == process.pid
        async with httpx.AsyncClient() as http:
            health = await http.get(url + "/healthz")
        assert health.status_code == 200
        listing = await run_cli("list", "--json", env=clean_env(DPLOYR_HOME=str(data)))
        assert (listing.code, listing.out.strip()) == (0, "[]")
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        code, rest = await finish(process)
    assert code == 0
    assert "dployr stopped" in rest
    assert not (data / "daemon.json").exists()

    # Started again, it keeps the token it made and says where it is.
    again = await Daemon.start(data)
    try:
        assert again.banner[1] == f"admin token: {data / 'admin-token'}"
        assert again.token == token
        assert (await again.cli("list")).code == 0
    finally:
        code, _ = await again.stop()
    assert code == 0


async def test_a_second_up_on_the_same_data_dir_is_refused(
    daemon: Daemon, worker_folder: Path
) -> None:
    await daemon.ok(
        "deploy", "--min-uptime", "300ms",
        "--name", "worker", "--remote", str(worker_folder), "--run-cmd",
        f"{PYTHON} worker.py",
    )  # fmt: skip
    before = await daemon.snapshot()
    second, lines = await start_up(daemon.data_dir)
    code, _ = await finish(second)
    assert code == 1
    assert lines == []
    err = (daemon.data_dir.parent / "data.stderr").read_text().splitlines()
    assert err[-1] == (
        f"error: another dployr daemon (pid {daemon.process.pid}) is already running on "
        f"{daemon.data_dir}"
    )
    assert "Traceback" not in "\n".join(err)
    assert await daemon.snapshot() == before
    assert json.loads((daemon.data_dir / "daemon.json").read_text())["url"] == daemon.url


async def test_up_on_a_port_in_use_refuses_before_starting_anything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process, lines = await start_up(data, "--port", str(port))
        code, _ = await finish(process)
    assert code == 1
    assert lines == []
    err = (tmp_path / "data.stderr").read_text()
    assert err == (
        f"error: port {port} on 127.0.0.1 is already in use by another program: "
        "choose another with --port\n"
    )
    assert not (data / "daemon.json").exists()


async def test_sigterm_stops_every_service_and_exits_0(
    daemon: Daemon, web_app: Path, worker_folder: Path
) -> None:
    port = free_port()
    await daemon.ok(
        "deploy", "--name", "web", "--remote", str(web_app), "--run-cmd", f"{PYTHON} app.py",
        "--min-uptime", "300ms", "--port", str(port),
    )  # fmt: skip
    await daemon.ok(
        "deploy", "--name", "worker", "--remote", str(worker_folder), "--run-cmd",
        f"{PYTHON} worker.py", "--min-uptime", "300ms",
    )  # fmt: skip
    pids = pids_of_service("web") + pids_of_service("worker")
    assert len(pids) >= 2
    follow = await trio.lowlevel.open_process(
        [PYTHON, "-m", "dployr", "logs", "web", "--follow", "--tail", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=daemon.env,
    )
    assert follow.stdout is not None
    assert follow.stderr is not None
    seen = b""
    with trio.fail_after(WAIT):
        while b"\n" not in seen:  # the tail is out
            seen += await follow.stdout.receive_some(4096)
        await http_get(port, "/live")
        while b"request /live" not in seen:  # a live line: the feed is open
            seen += await follow.stdout.receive_some(4096)
    code, rest = await daemon.stop()
    assert code == 0
    assert "dployr stopped: every service was stopped" in rest
    assert pids_of_service("web") == pids_of_service("worker") == []  # zombies aside
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # its public port is closed
    with trio.fail_after(WAIT):  # a follower learns the daemon went away
        assert await follow.wait() == 1
        err = (await follow.stderr.receive_some(4096)).decode()
    await follow.stdout.aclose()
    await follow.stderr.aclose()
    assert err == "error: the log feed of web ended: the daemon closed it (stopped?)\n"
    gone = await daemon.cli("list")
    assert "no dployr daemon is running" in gone.one_line_error()
