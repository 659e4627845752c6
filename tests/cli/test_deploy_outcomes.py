"""Deploy outcomes as new users met them: the real CLI against a real daemon and git repos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import Daemon, free_port, http_get
from tests.helpers import PYTHON, commit, git, make_repo

pytestmark = pytest.mark.slow

CRASHER = (
    "import sys\nprint('starting up', flush=True)\nraise RuntimeError('DATABASE_URL is not set')\n"
)


async def test_a_release_that_dies_at_start_is_not_a_success(
    daemon: Daemon, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "crasher", {"app.py": CRASHER})

    result = await daemon.cli(
        "deploy", "--name", "crasher", "--remote", ".", "--run-cmd", f"{PYTHON} app.py", cwd=repo
    )

    error = result.one_line_error()
    assert error == (
        "error: deploy 1 of crasher failed: the new release exited with code 1 before it was ready"
    )
    assert "==> waiting for it to stay up 5 s" in result.out
    assert "succeeded" not in result.out
    # What it said last is shown, and kept in the record.
    assert "    RuntimeError: DATABASE_URL is not set" in result.out
    records = json.loads(await daemon.ok("deployments", "crasher", "--json"))
    assert records[0]["status"] == "failed"
    assert "RuntimeError: DATABASE_URL is not set" in records[0]["output_tail"]
    info = json.loads(await daemon.ok("get", "crasher", "--json"))
    assert info["status"] == "failed"
    # With --json, the failure is a JSON error on stdout, with the same exit code.
    result = await daemon.cli("deploy", "--name", "crasher", "--json")
    assert result.code == 1
    error = json.loads(result.out)["error"]
    assert error["message"].startswith("deploy 2 of crasher failed: the new release exited")


BLUEPRINT = """\
name = "worker"
remote = "."
run_cmd = "{python} worker.py"

[restart]
min_uptime = {uptime}
"""


async def test_waiting_for_the_minimum_uptime_shows_progress(
    daemon: Daemon, tmp_path: Path
) -> None:
    repo = make_repo(
        tmp_path / "worker",
        {
            "worker.py": "import time\nprint('working', flush=True)\ntime.sleep(1e6)\n",
            "dployr.toml": BLUEPRINT.format(python=PYTHON, uptime=2.5),
        },
    )
    out = await daemon.ok("deploy", cwd=repo)
    assert "==> waiting for it to stay up 2.5 s" in out
    assert "==> waiting for it to stay up 2.5 s: 1 s" in out
    assert "==> succeeded" in out


async def test_a_command_right_after_a_deploy_is_accepted(daemon: Daemon, web_app: Path) -> None:
    port = free_port()
    deploy = (
        "deploy", "--name", "flaskr", "--remote", str(web_app), "--run-cmd",
        f"{PYTHON} app.py", "--port", str(port), "--health-check", "/health",
    )  # fmt: skip
    await daemon.ok(*deploy)
    for round_ in range(3):
        commit(web_app, {"VERSION": f"v{round_ + 2}\n"})
        out = await daemon.ok(*deploy)
        assert "==> succeeded" in out
        # At once: the deploy is over when the CLI says so.
        out = await daemon.ok("rollback", "flaskr")
        assert "==> succeeded" in out
    # Each rollback is a deployment of its own: 1, then (deploy, rollback) three times.
    records = json.loads(await daemon.ok("deployments", "flaskr", "--json"))
    assert [r["id"] for r in records] == [7, 6, 5, 4, 3, 2, 1]
    assert [r["rollback_of"] for r in records] == [5, None, 3, None, 1, None, None]


async def test_flags_of_one_deploy_do_not_haunt_the_next(daemon: Daemon, web_app: Path) -> None:
    port = free_port()
    first = git(web_app, "rev-parse", "HEAD")
    commit(web_app, {"VERSION": "v2\n"})
    base = (
        "deploy", "--name", "hello", "--remote", str(web_app), "--run-cmd",
        f"{PYTHON} app.py", "--port", str(port), "--health-check", "/health",
    )  # fmt: skip

    # --commit pins that one deploy, and is never saved.
    await daemon.ok(*base, "--commit", first)
    assert await http_get(port) == "hello v1 1"
    settings = json.loads(await daemon.ok("settings", "hello", "--json"))
    assert settings["settings"]["source"]["commit"] is None
    await daemon.ok("deploy", "--name", "hello", "--branch", "main")
    assert await http_get(port) == "hello v2 2"

    # A failing build saves neither its build command nor its variables.
    failed = await daemon.cli(
        "deploy", "--name", "hello", "--build-cmd", "echo checking; exit 1", "--env", "MODE=new"
    )
    assert failed.one_line_error().startswith("error: deploy 3 of hello failed: build exited 1")
    settings = json.loads(await daemon.ok("settings", "hello", "--json"))
    assert settings["settings"]["build_cmd"] is None
    assert "MODE" not in await daemon.ok("env", "list", "hello")
    await daemon.ok("service", "restart", "hello")
    assert await http_get(port, "/env/MODE") == "<unset>"
    # The next plain deploy uses what the last good one did.
    out = await daemon.ok("deploy", "--name", "hello")
    assert "==> succeeded" in out
    assert await http_get(port) == "hello v2 4"

    # A deploy that succeeds saves its settings and variables together.
    await daemon.ok("deploy", "--name", "hello", "--env", "MODE=new", "--description", "hi")
    assert await http_get(port, "/env/MODE") == "new"
    settings = json.loads(await daemon.ok("settings", "hello", "--json"))
    assert settings["settings"]["description"] == "hi"
    assert settings["pending"] == []
    # A later restart keeps the environment as it is now, not as that deploy brought it.
    await daemon.ok("env", "set", "hello", "MODE=later")
    await daemon.ok("service", "restart", "hello")
    assert await http_get(port, "/env/MODE") == "later"
