"""The CLI's small promises (issue 11, points 13 and 16), with the real CLI and daemon."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import Daemon, clean_env, free_port, run_cli
from tests.helpers import PYTHON, make_repo

pytestmark = pytest.mark.slow


@pytest.fixture
async def worker(daemon: Daemon, tmp_path: Path) -> Daemon:
    """The daemon with one service, ``w``: a worker with no build command."""
    repo = make_repo(tmp_path / "worker", {"worker.py": "import signal\nsignal.pause()\n"})
    await daemon.ok(
        "deploy",
        "--min-uptime",
        "300ms",
        "--name",
        "w",
        "--remote",
        str(repo),
        "--run-cmd",
        f"{PYTHON} w*.py",
    )
    return daemon


async def test_json_errors_are_json_on_stdout_with_the_same_exit_codes(worker: Daemon) -> None:
    for args, code, kind, text in (
        (("get", "nope", "--json"), 1, "not_found", "no service named 'nope'"),
        (("--json", "get", "nope"), 1, "not_found", "no service named 'nope'"),
        (("settings", "w", "--port", "x", "--json"), 1, "refused", "--port must be a number"),
        (("env", "unset", "w", "NOPE", "--json"), 1, "invalid", "NOPE was not set"),
        (("logs", "w", "--tail", "-3", "--json"), 2, "usage", "Invalid value for '--tail'"),
    ):
        result = await worker.cli(*args)
        assert (result.code, result.err) == (code, ""), (args, result)
        error = json.loads(result.out)["error"]
        assert error["code"] == kind, (args, error)
        assert text in error["message"], (args, error)
    # Without --json, the same error is one line on stderr.
    plain = await worker.cli("get", "nope")
    assert (plain.out, plain.one_line_error()) == ("", "error: no service named 'nope'")


async def test_json_error_when_no_daemon_runs(tmp_path: Path) -> None:
    result = await run_cli("list", "--json", env=clean_env(DPLOYR_HOME=str(tmp_path / "none")))
    assert (result.code, result.err) == (1, "")
    assert "dployr up" in json.loads(result.out)["error"]["message"]


async def test_env_unset_of_a_variable_not_set_changes_nothing(worker: Daemon) -> None:
    await worker.ok("env", "set", "w", "X=1", "Y=2")
    refused = await worker.cli("env", "unset", "w", "X", "NOPE", "ALSO")
    assert refused.one_line_error() == "error: ALSO, NOPE were not set: nothing was unset"
    assert refused.code == 1
    listing = json.loads(await worker.ok("env", "list", "w", "--json"))
    assert [v["key"] for v in listing["vars"]] == ["X", "Y"]
    await worker.ok("env", "unset", "w", "X")
    listing = json.loads(await worker.ok("env", "list", "w", "--json"))
    assert [v["key"] for v in listing["vars"]] == ["Y"]


async def test_counts_are_plural_only_when_more_than_one(worker: Daemon) -> None:
    first = (await worker.ok("instances")).splitlines()[0]
    assert first.endswith(", 1 service"), first
    shown = await worker.ok("settings", "w", "--health-check", "/h", "--health-successes", "1")
    assert "healthy after 1 success" in shown
    assert "1 successes" not in shown


async def test_logs_build_says_why_there_is_no_build_output(worker: Daemon) -> None:
    out = await worker.ok("logs", "w", "--build")
    assert out == "no build output: deployment 1 has no build command\n"
    assert await worker.ok("logs", "w", "--build", "--json") == ""


async def test_listen_fds_is_a_flag_of_deploy_and_settings(daemon: Daemon, tmp_path: Path) -> None:
    app = (
        "import os, socket\n"
        "sock = socket.socket(fileno=3)\n"
        "print('fds', os.environ['LISTEN_FDS'], flush=True)\n"
        "while True:\n"
        "    conn, _ = sock.accept()\n"
        "    conn.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok')\n"
        "    conn.close()\n"
    )
    repo = make_repo(tmp_path / "fd", {"app.py": app})
    port = free_port()
    await daemon.ok(
        "deploy", "--min-uptime", "300ms",
        "--name", "fd", "--remote", str(repo), "--run-cmd", f"{PYTHON} app.py",
        "--port", str(port), "--listen-fds",
    )  # fmt: skip
    shown = await daemon.ok("settings", "fd")
    assert "listen-fds   True" in shown
    view = json.loads(await daemon.ok("settings", "fd", "--no-listen-fds", "--json"))
    assert view["settings"]["listen_fds"] is False
    assert view["pending"] == ["listen_fds"]


async def test_remote_and_branch_are_settings_too(worker: Daemon, tmp_path: Path) -> None:
    other = make_repo(tmp_path / "other", {"worker.py": "import signal\nsignal.pause()\n"})
    view = json.loads(
        await worker.ok("settings", "w", "--remote", str(other), "--branch", "main", "--json")
    )
    assert view["settings"]["source"] == {"remote": str(other), "branch": "main", "commit": None}
    assert view["pending"] == ["source"]
    view = json.loads(await worker.ok("settings", "w", "--branch", "", "--json"))
    assert view["settings"]["source"]["branch"] is None
    shown = await worker.ok("settings", "w")
    assert f"  remote       {other}  (waits for the next deploy)\n" in shown
