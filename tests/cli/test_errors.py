"""Bad input, bad tokens, taken ports, broken blueprints: one line, non-zero, nothing changed."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from dployr import __version__
from tests.cli.conftest import (
    Daemon,
    clean_env,
    free_port,
    http_get,
    run_all,
    run_cli,
)
from tests.helpers import PYTHON

pytestmark = pytest.mark.slow

BAD_NAMES = ["../x", "", "x" * 300, "my api", "café", "サービス", "UPPER", "x-", "a/b"]


@pytest.fixture
async def running(daemon: Daemon, web_app: Path) -> Daemon:
    """The daemon with one service, my-api, running on a public port."""
    port = free_port()
    await daemon.ok(
        "deploy", "--name", "my-api", "--remote", str(web_app), "--run-cmd", f"{PYTHON} app.py",
        "--min-uptime", "300ms", "--port", str(port),
    )  # fmt: skip
    return daemon


async def unchanged(daemon: Daemon, before: dict[str, tuple[object, ...]]) -> None:
    """What ran before still runs, as it did; nothing new runs."""
    after = await daemon.snapshot()
    assert {name: after.get(name) for name in before} == before
    for name, (status, pid, _, pids) in after.items():
        if name not in before:
            assert status != "running", (name, after[name])
            assert pid is None
            assert pids == ()


async def test_bad_service_names(running: Daemon, web_app: Path) -> None:
    before = await running.snapshot()
    commands: list[list[str]] = []
    for name in BAD_NAMES:
        commands += [
            ["get", name],
            ["service", "restart", name],
            ["deploy", "--name", name, "--remote", str(web_app), "--run-cmd", "true"],
        ]
    for name in BAD_NAMES[:2]:
        commands += [
            ["service", "status", name],
            ["logs", name, "--follow"],
            ["env", "set", name, "A=1"],
            ["delete", name, "--yes"],
        ]
    for args, result in zip(commands, await run_all(running, commands), strict=True):
        line = result.one_line_error()
        assert result.code == 1, (args, result)
        assert "service name" in line, (args, line)
    await unchanged(running, before)


async def test_an_unknown_service(running: Daemon) -> None:
    before = await running.snapshot()
    commands = [
        ["get", "nope"],
        ["service", "status", "nope"],
        ["service", "start", "nope"],
        ["service", "stop", "nope"],
        ["service", "restart", "nope"],
        ["logs", "nope"],
        ["logs", "nope", "--follow"],
        ["settings", "nope"],
        ["settings", "nope", "--description", "x"],
        ["env", "list", "nope"],
        ["env", "set", "nope", "A=1"],
        ["env", "unset", "nope", "A"],
        ["deployments", "nope"],
        ["delete", "nope", "--yes"],
        ["deploy", "--name", "nope"],
    ]
    for args, result in zip(commands, await run_all(running, commands), strict=True):
        assert "no service named 'nope'" in result.one_line_error(), args
        assert result.code == 1
    await unchanged(running, before)


async def test_usage_errors_exit_2_in_one_line(running: Daemon) -> None:
    before = await running.snapshot()
    commands = [
        ["nothing"],
        ["get"],
        ["list", "--what"],
        ["logs", "my-api", "--tail", "many"],
        ["deploy", "--port", "99999"],
        ["env", "set", "my-api"],
        ["env", "set", "my-api", "=x"],
        ["service", "status"],
        ["deployments", "my-api", "--limit", "0"],
    ]
    for args, result in zip(commands, await run_all(running, commands), strict=True):
        line = result.one_line_error()
        assert result.code == 2, (args, result)
        assert "--help" in line
    await unchanged(running, before)
    version = await running.cli("--version")
    assert (version.code, version.out) == (0, f"dployr, version {__version__}\n")
    bare = await running.cli("service")  # a group alone shows its help
    assert bare.code == 2
    assert "Commands:" in bare.err


async def test_no_token_or_a_wrong_token(running: Daemon) -> None:
    before = await running.snapshot()
    server = ["--server", running.url]
    env = clean_env()
    wrong = await run_cli(*server, "--token", "dployr_wrong", "list", env=env)
    assert wrong.one_line_error() == "error: invalid API token"
    via_env = await run_cli(
        "get", "my-api", env=clean_env(DPLOYR_SERVER=running.url, DPLOYR_TOKEN="nope")
    )
    assert via_env.one_line_error() == "error: invalid API token"
    missing = await run_cli(*server, "list", env=env)
    assert "--token" in missing.one_line_error()
    stream = await run_cli(*server, "--token", "x", "logs", "my-api", "-f", env=env)
    assert "token" in stream.one_line_error()
    token_file = running.data_dir / "admin-token"
    token = token_file.read_text()
    token_file.write_text("dployr_not-the-token\n")
    stale = await running.cli("service", "stop", "my-api")
    token_file.write_text(token)
    assert stale.one_line_error() == "error: invalid API token"
    await unchanged(running, before)


async def test_the_token_is_sent_and_checked(daemon: Daemon) -> None:
    token = daemon.token
    env = clean_env(DPLOYR_SERVER=daemon.url + "/", DPLOYR_TOKEN=token)
    listing = await run_cli("list", "--json", env=env)
    assert (listing.code, json.loads(listing.out)) == (0, [])
    nowhere = await run_cli("--server", "http://127.0.0.1:9", "--token", token, "list", env=env)
    assert "cannot reach the dployr daemon at http://127.0.0.1:9" in nowhere.one_line_error()
    ftp = await run_cli("--server", "ftp://x", "--token", token, "list", env=env)
    assert "http://" in ftp.one_line_error()
    no_daemon = await run_cli("list", env=clean_env(DPLOYR_HOME=str(daemon.data_dir / "nope")))
    assert "no dployr daemon is running" in no_daemon.one_line_error()


async def test_a_port_in_use_by_another_program(running: Daemon, web_app: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = await running.snapshot()

        fresh = await running.cli(
            "deploy", "--name", "other", "--remote", str(web_app), "--run-cmd",
            f"{PYTHON} app.py", "--port", str(port), "--min-uptime", "300ms",
        )  # fmt: skip
        line = fresh.one_line_error()
        assert f"port {port} is already in use" in line
        assert "previous release" not in line  # there was none
        await unchanged(running, before)

        settings = json.loads(await running.ok("settings", "my-api", "--json"))
        moved = await running.cli(
            "deploy", "--name", "my-api", "--remote", str(web_app), "--run-cmd",
            f"{PYTHON} app.py", "--port", str(port), "--min-uptime", "300ms",
        )  # fmt: skip
        # Refused when asked, before a deploy starts: no record, the release runs on.
        assert moved.one_line_error() == f"error: port {port} is already in use by another program"
        await unchanged(running, before)
        history = json.loads(await running.ok("deployments", "my-api", "--json"))
        assert [d["status"] for d in history] == ["succeeded"]
        assert await http_get(settings["settings"]["port"]) == "hello v1 1"


async def test_a_remote_that_does_not_exist(running: Daemon, tmp_path: Path) -> None:
    before = await running.snapshot()
    command = [
        "deploy",
        "--min-uptime",
        "300ms",
        "--name",
        "my-api",
        "--run-cmd",
        f"{PYTHON} app.py",
    ]
    local = await running.cli(*command, "--remote", str(tmp_path / "nowhere"))
    assert "does not exist" in local.one_line_error()
    relative = await running.cli(*command, "--remote", "./nowhere", cwd=tmp_path)
    assert "does not exist" in relative.one_line_error()
    url = await running.cli(*command, "--remote", f"file://{tmp_path}/nowhere.git")
    line = url.one_line_error()
    assert "deploy 2 of my-api failed: fetch failed" in line
    assert "the previous release is still running" in line
    branch = await running.cli(*command, "--remote", str(tmp_path.parent), "--branch", "x..y")
    assert "branch" in branch.one_line_error()
    scheme = await running.cli(*command, "--remote", "http://example.invalid/x.git")
    assert "https" in scheme.one_line_error()
    await unchanged(running, before)


MALFORMED_BLUEPRINTS: list[tuple[str, str | bytes | None, str]] = [
    ("bad.toml", 'name = "x\nrun_cmd = ', "malformed blueprint"),
    ("bad.yaml", "name: [x\n", "malformed YAML at line"),
    ("bad.json", '{"name": "x",', "malformed blueprint"),
    ("bad.json", '["x"]', "must be a table"),
    ("bad.json", '{"name": "x", "remote": ".", "run_cmd": 3}', "run_cmd must be text"),
    ("bad.json", '{"name": "x", "remote": ".", "run_cmd": "a", "bogus": 1}', "bogus"),
    ("bad.json", '{"name": "x", "remote": "."}', "run-cmd is required"),
    ("bad.json", '{"name": "x", "run_cmd": "a"}', "remote"),
    ("bad.json", '{"name": "x", "remote": ".", "run_cmd": "a", "port": "80"}', "port"),
    ("bad.json", '{"name": "x", "remote": ".", "run_cmd": "a", "port": 70000}', "port"),
    ("bad.json", '{"name": "../x", "remote": ".", "run_cmd": "a"}', "service name"),
    ("bad.toml", 'name = "x"\nremote = "."\nrun_cmd = "a"\n[env_vars]\nN = 1\n', "quote"),
    ("bad.toml", 'name = "x"\nremote = "."\nrun_cmd = "a"\n[env_vars]\n1A = "x"\n', "1A"),
    ("bad.txt", 'name = "x"', "must end in .toml, .yaml, .yml or .json"),
    ("missing.toml", None, "cannot read blueprint"),
    ("bad.toml", b"\xff\xfe", "not UTF-8"),
]


async def test_a_malformed_blueprint(running: Daemon, tmp_path: Path) -> None:
    before = await running.snapshot()
    commands = []
    for number, (filename, content, _) in enumerate(MALFORMED_BLUEPRINTS):
        path = tmp_path / str(number) / filename
        path.parent.mkdir()
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            path.write_text(content)
        commands.append(["deploy", "--blueprint", str(path)])
    results = await run_all(running, commands)
    for (filename, content, message), result in zip(MALFORMED_BLUEPRINTS, results, strict=True):
        assert message in result.one_line_error(), (filename, content)
        assert result.code == 1
    await unchanged(running, before)
    assert set(await running.services()) == {"my-api"}
