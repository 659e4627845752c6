"""Every command of the product page, as written, with the real CLI against a real daemon."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
from pathlib import Path

import pytest
import trio

from tests.cli.conftest import WAIT, Daemon, free_port, http_get, process_group
from tests.helpers import PYTHON, commit, pids_of_service

pytestmark = pytest.mark.slow

STATUS_FIELDS = {
    "name",
    "status",
    "health",
    "instance",
    "pid",
    "port",
    "restarts",
    "deployment",
    "description",
}


def deploy_command(repo: Path, port: int, *extra: str) -> tuple[str, ...]:
    return (
        "deploy",
        "--min-uptime",
        "300ms",
        "--name",
        "my-api",
        "--remote",
        str(repo),
        "--build-cmd",
        "sh build.sh",
        "--run-cmd",
        f"{PYTHON} app.py",
        "--port",
        str(port),
        *extra,
    )


BUILD_OK = "echo building $(cat VERSION)\n"


async def test_deploy_redeploy_and_a_failed_build(daemon: Daemon, web_app: Path) -> None:
    commit(web_app, {"build.sh": BUILD_OK})
    port = free_port()
    command = deploy_command(web_app, port, "--description", "The API")

    out = await daemon.ok(*command)
    assert "deploying my-api: deployment 1" in out
    for step in ("==> fetching", "==> building: sh build.sh", "==> starting", "==> succeeded"):
        assert step in out, out
    assert "    building v1" in out  # the build output, streamed
    assert f"my-api is running on port {port} (deployment 1, pid " in out
    assert await http_get(port) == "hello v1 1"
    first = process_group("my-api")
    assert first is not None

    # Running the same command again pulls the new code, builds it and swaps it in.
    commit(web_app, {"VERSION": "v2\n"})
    out = await daemon.ok(*command)
    assert "    building v2" in out
    assert "deployment 2" in out
    assert await http_get(port) == "hello v2 2"
    second = json.loads(await daemon.ok("get", "my-api", "--json"))
    assert second["deployment"] == 2
    assert second["status"] == "running"
    assert process_group("my-api") == second["pid"]
    assert second["pid"] != first
    assert first not in pids_of_service("my-api")  # the old release is gone

    # A redeploy whose build fails leaves the previous release running.
    commit(web_app, {"VERSION": "v3\n", "build.sh": "echo building v3; echo broken >&2; exit 3\n"})
    failed = await daemon.cli(*command)
    assert failed.code == 1
    error = failed.one_line_error()
    assert "deploy 3 of my-api failed: build exited 3" in error
    assert "the previous release is still running" in error
    assert "    broken" in failed.out  # the build output that says why
    assert await http_get(port) == "hello v2 2"
    after = json.loads(await daemon.ok("service", "status", "my-api", "--json"))
    assert (after["status"], after["pid"], after["deployment"]) == ("running", second["pid"], 2)

    history = json.loads(await daemon.ok("deployments", "my-api", "--json"))
    assert [(d["id"], d["status"], d["active"]) for d in history] == [
        (3, "failed", False),
        (2, "succeeded", True),
        (1, "succeeded", False),
    ]
    assert "build exited 3" in history[0]["error"]
    table = await daemon.ok("deployments", "my-api")
    assert table.splitlines()[0].split() == ["ID", "STATUS", "REVISION", "CREATED", "NOTE"]
    assert any(line.startswith("*") and " 2 " in line for line in table.splitlines())

    build = await daemon.ok("logs", "my-api", "--build")
    assert "B building v1" in build
    assert "B broken" in build
    assert "listening" not in build


async def test_list_get_status_and_instances(daemon: Daemon, web_app: Path) -> None:
    assert "no services yet" in await daemon.ok("list")
    assert json.loads(await daemon.ok("list", "--json")) == []
    port = free_port()
    await daemon.ok(
        "deploy",
        "--min-uptime",
        "300ms",
        "--name",
        "my-api",
        "--remote",
        str(web_app),
        "--run-cmd",
        f"{PYTHON} app.py",
        "--port",
        str(port),
        "--description",
        "The public API",
    )
    listing = json.loads(await daemon.ok("list", "--json"))
    assert len(listing) == 1
    assert set(listing[0]) >= STATUS_FIELDS
    entry = listing[0]
    assert entry["name"] == "my-api"
    assert entry["instance"] == "local"
    assert entry["status"] == "running"
    assert entry["health"] in ("unknown", "healthy")
    assert entry["port"] == port
    assert entry["restarts"] == 0
    assert entry["deployment"] == 1
    assert entry["description"] == "The public API"
    assert process_group("my-api") == entry["pid"]

    table = (await daemon.ok("list")).splitlines()
    assert table[0].split()[:4] == ["NAME", "STATUS", "HEALTH", "INSTANCE"]
    assert table[1].split()[:4] == ["my-api", "running", entry["health"], "local"]

    got = json.loads(await daemon.ok("get", "my-api", "--json"))
    status = json.loads(await daemon.ok("--json", "service", "status", "my-api"))
    for shown in (got, status):
        assert set(shown) >= STATUS_FIELDS
        assert {k: shown[k] for k in STATUS_FIELDS} == {k: entry[k] for k in STATUS_FIELDS}
    text = await daemon.ok("get", "my-api")
    assert text.splitlines()[0] == f"my-api: running ({entry['health']})"
    assert f"pid         {entry['pid']}" in text
    assert "description The public API" in text

    instances = json.loads(await daemon.ok("instances", "--json"))
    assert len(instances) == 1
    assert instances[0]["name"] == "local"
    assert [s["name"] for s in instances[0]["services"]] == ["my-api"]
    assert set(instances[0]["services"][0]) >= STATUS_FIELDS
    shown = await daemon.ok("instances")
    assert shown.startswith("instance local (")
    assert "my-api" in shown
    by_name = json.loads(await daemon.ok("instance", "local", "--json"))
    by_id = json.loads(await daemon.ok("instance", instances[0]["id"], "--json"))
    assert by_name["id"] == by_id["id"] == instances[0]["id"]
    missing = await daemon.cli("instance", "elsewhere")
    assert "no instance 'elsewhere'" in missing.one_line_error()


async def test_start_stop_restart_status(daemon: Daemon, web_app: Path) -> None:
    port = free_port()
    await daemon.ok(
        "deploy", "--name", "my-api", "--remote", str(web_app), "--run-cmd", f"{PYTHON} app.py",
        "--min-uptime", "300ms", "--port", str(port),
    )  # fmt: skip
    status = await daemon.ok("service", "status", "my-api")
    assert status.startswith("my-api: running")
    pid = process_group("my-api")

    stopped = await daemon.ok("service", "stop", "my-api")
    assert stopped.startswith("my-api: stopped")
    assert pids_of_service("my-api") == []
    assert json.loads(await daemon.ok("service", "status", "my-api", "--json"))["pid"] is None
    again = await daemon.ok("service", "stop", "my-api")  # stopping a stopped service is fine
    assert again.startswith("my-api: stopped")

    started = json.loads(await daemon.ok("service", "start", "my-api", "--json"))
    assert started["status"] == "running"
    assert started["deployment"] == 1  # a start keeps the current deployment
    assert process_group("my-api") == started["pid"]
    assert started["pid"] != pid
    assert await http_get(port) == "hello v1 1"

    restarted = json.loads(await daemon.ok("service", "restart", "my-api", "--json"))
    assert restarted["status"] == "running"
    assert restarted["deployment"] == 1
    assert restarted["pid"] not in (None, started["pid"])
    assert process_group("my-api") == restarted["pid"]
    assert await http_get(port) == "hello v1 1"
    text = await daemon.ok("service", "restart", "my-api")
    assert text.startswith("my-api: running")


async def test_logs_tail_since_and_follow(daemon: Daemon, web_app: Path) -> None:
    port = free_port()
    await daemon.ok(
        "deploy", "--name", "my-api", "--remote", str(web_app), "--run-cmd", f"{PYTHON} app.py",
        "--min-uptime", "300ms", "--port", str(port),
    )  # fmt: skip
    recent = await daemon.ok("logs", "my-api")
    assert "  listening on " in recent
    assert "# deploy 1: succeeded" in recent
    lines = recent.splitlines()
    assert (await daemon.ok("logs", "my-api", "--tail", "100")).splitlines() == lines
    assert (await daemon.ok("logs", "my-api", "-n", "2")).splitlines() == lines[-2:]
    assert (await daemon.ok("logs", "my-api", "--since", "10m")).splitlines() == lines
    assert await daemon.ok("logs", "my-api", "--since", "2030-01-01T00:00:00Z") == ""
    assert (await daemon.ok("logs", "my-api", "--since", "2h", "-n", "1")).splitlines() == [
        lines[-1]
    ]
    as_json = [
        json.loads(line)
        for line in (await daemon.ok("logs", "my-api", "--json")).split("\n")
        if line
    ]
    assert [entry["line"] for entry in as_json][-1] == lines[-1].split(" ", 2)[2].strip()
    assert {"cursor", "ts", "stream", "line", "deployment"} <= set(as_json[0])
    bad = await daemon.cli("logs", "my-api", "--since", "yesterday")
    assert "invalid time 'yesterday'" in bad.one_line_error()

    # --follow prints new lines as they come, until Ctrl-C, which exits 0.
    follow = await trio.lowlevel.open_process(
        [PYTHON, "-m", "dployr", "logs", "my-api", "--follow", "--tail", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=daemon.env,
    )
    assert follow.stdout is not None
    assert follow.stderr is not None
    seen = b""
    with trio.fail_after(WAIT):
        while b"\n" not in seen:  # the tail is out: the feed is open
            seen += await follow.stdout.receive_some(4096)
        assert await http_get(port, "/followed") == "hello v1 1"
        while b"request /followed" not in seen:
            chunk = await follow.stdout.receive_some(4096)
            assert chunk, seen
            seen += chunk
        follow.send_signal(signal.SIGINT)
        code = await follow.wait()
        err = await follow.stderr.receive_some(65536)
    await follow.stdout.aclose()
    await follow.stderr.aclose()
    assert code == 0, err
    assert b"Traceback" not in err
    assert seen.decode().splitlines()[0] == lines[-1]


async def test_settings_wait_for_the_next_deploy(daemon: Daemon, web_app: Path) -> None:
    port = free_port()
    command = (
        "deploy", "--name", "my-api", "--remote", str(web_app), "--run-cmd", f"{PYTHON} app.py",
        "--min-uptime", "300ms", "--port", str(port),
    )  # fmt: skip
    await daemon.ok(*command)
    pid = process_group("my-api")
    shown = await daemon.ok("settings", "my-api")
    assert shown.splitlines()[0] == "settings of my-api:"
    assert f"port         {port}" in shown
    assert "waits for the next deploy" not in shown

    new_port = free_port()
    changed = await daemon.ok(
        "settings", "my-api", "--port", str(new_port), "--description", "Now described"
    )
    assert f"port         {new_port}  (waits for the next deploy)" in changed
    assert "description  Now described  (waits for the next deploy)" in changed
    assert "Changes apply at the next deploy; the running service is not restarted." in changed
    view = json.loads(await daemon.ok("settings", "my-api", "--json"))
    assert sorted(view["pending"]) == ["description", "port"]
    assert view["active"]["port"] == port
    # Nothing running was touched.
    assert process_group("my-api") == pid
    assert await http_get(port) == "hello v1 1"
    status = json.loads(await daemon.ok("service", "status", "my-api", "--json"))
    assert (status["pid"], status["port"]) == (pid, port)

    # The same deploy command applies them; it does not undo what it does not mention.
    out = await daemon.ok(*command[:-2])
    assert f"on port {new_port}" in out
    assert await http_get(new_port) == "hello v1 2"
    view = json.loads(await daemon.ok("settings", "my-api", "--json"))
    assert view["pending"] == []
    assert view["settings"]["description"] == "Now described"

    bad = await daemon.cli("settings", "my-api", "--port", "http")
    assert "--port must be a number" in bad.one_line_error()
    bad = await daemon.cli("settings", "my-api", "--health-check", "no-slash")
    assert "health-check" in bad.one_line_error()


async def test_env_set_list_unset(daemon: Daemon, web_app: Path) -> None:
    port = free_port()
    await daemon.ok(
        "deploy", "--name", "my-api", "--remote", str(web_app), "--run-cmd", f"{PYTHON} app.py",
        "--min-uptime", "300ms", "--port", str(port), "--env", "GREETING=hi",
    )  # fmt: skip
    assert await http_get(port, "/env/GREETING") == "hi"
    pid = process_group("my-api")

    out = await daemon.ok("env", "set", "my-api", "LOG_LEVEL=debug", "EMPTY=")
    assert "LOG_LEVEL=debug" in out.splitlines()
    assert out.splitlines()[-1] == ("The change applies at the next start, restart or deploy.")
    assert process_group("my-api") == pid  # not restarted
    assert await http_get(port, "/env/LOG_LEVEL") == "<unset>"

    listing = json.loads(await daemon.ok("env", "list", "my-api", "--json"))
    assert [(v["key"], v["value"], v["secret"]) for v in listing["vars"]] == [
        ("EMPTY", "", False),
        ("GREETING", "hi", False),
        ("LOG_LEVEL", "debug", False),
    ]
    assert "GREETING=hi" in (await daemon.ok("env", "list", "my-api")).splitlines()

    out = await daemon.ok("env", "set", "my-api", "LOG_LEVEL=info", "--restart")
    assert out.splitlines()[-1] == "The change applies now: the service was restarted."
    assert await http_get(port, "/env/LOG_LEVEL") == "info"
    assert process_group("my-api") not in (None, pid)

    out = await daemon.ok("env", "unset", "my-api", "GREETING", "EMPTY")
    assert "GREETING" not in out
    assert out.splitlines()[-1] == "The change applies at the next start, restart or deploy."
    assert await http_get(port, "/env/GREETING") == "hi"
    out = await daemon.ok("env", "unset", "my-api", "LOG_LEVEL", "--restart")
    assert out.splitlines() == [
        "my-api has no environment variables",
        "The change applies now: the service was restarted.",
    ]
    assert await http_get(port, "/env/GREETING") == "<unset>"

    for args, text in (
        (("env", "set", "my-api", "NOEQUALS"), "is not KEY=VALUE"),
        (("env", "set", "my-api", "1BAD=x"), "invalid environment variable name"),
        (("env", "set", "my-api", "PORT=1"), "PORT is set by dployr"),
        (("env", "unset", "my-api", "bad-key"), "invalid environment variable name"),
    ):
        result = await daemon.cli(*args)
        assert text in result.one_line_error(), args


async def test_delete_asks_and_keeps_the_repository(daemon: Daemon, web_app: Path) -> None:
    port = free_port()
    await daemon.ok(
        "deploy", "--name", "my-api", "--remote", str(web_app), "--run-cmd", f"{PYTHON} app.py",
        "--min-uptime", "300ms", "--port", str(port),
    )  # fmt: skip
    before = await daemon.snapshot()

    refused = await daemon.cli("delete", "my-api")  # stdin is not a terminal
    assert "without --yes" in refused.one_line_error()
    assert await daemon.snapshot() == before

    asked = await in_terminal(daemon, ["delete", "my-api"], answer=b"n\n")
    assert "Delete service my-api" in asked[1]
    assert asked[0] == 0  # the answer asked for is no failure
    assert asked[1].rstrip().endswith("not deleted")
    assert await daemon.snapshot() == before

    code, screen = await in_terminal(daemon, ["delete", "my-api"], answer=b"y\n")
    assert code == 0, screen
    assert "deleted my-api" in screen
    assert pids_of_service("my-api") == []
    assert await daemon.snapshot() == {}
    folder = daemon.data_dir / "services" / "my-api"
    assert [p.name for p in folder.iterdir()] == ["data"]  # kept without --purge
    assert (web_app / "app.py").is_file()  # the repository is not touched

    pause = f"{PYTHON} -c 'import signal; signal.pause()'"
    await daemon.ok(
        "deploy",
        "--min-uptime",
        "300ms",
        "--name",
        "other",
        "--remote",
        str(web_app),
        "--run-cmd",
        pause,
    )
    assert json.loads(await daemon.ok("delete", "other", "--yes", "--json")) == {"name": "other"}
    gone = await daemon.cli("delete", "other", "--yes")
    assert gone.one_line_error() == "error: no service named 'other'"


async def in_terminal(daemon: Daemon, args: list[str], answer: bytes) -> tuple[int, str]:
    """Run the CLI on a pseudo-terminal, type ``answer``; its exit code and screen."""
    leader, follower = pty.openpty()
    try:
        process = await trio.lowlevel.open_process(
            [PYTHON, "-m", "dployr", *args],
            stdin=follower,
            stdout=follower,
            stderr=follower,
            env=daemon.env,
        )
        os.close(follower)
        screen = b""
        with trio.fail_after(WAIT):
            while b"[y/N]" not in screen:
                await trio.lowlevel.wait_readable(leader)
                screen += os.read(leader, 4096)
            os.write(leader, answer)
            code = await process.wait()
            while True:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the terminal closed with the process
                    break
                if not chunk:
                    break
                screen += chunk
    finally:
        os.close(leader)
    return code, screen.decode(errors="replace")
