"""The CLI reads what the daemon says as values: outcomes from events, answers decoded.

The real CLI against a real daemon (or, for an answer it cannot read, a server on loopback
that speaks HTTP but is no dployr of this version).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from tests.cli.conftest import WAIT, Daemon, clean_env, run_cli
from tests.helpers import PYTHON, make_repo

SLEEPER = "import signal\nprint('up', flush=True)\nsignal.pause()\n"


@pytest.mark.slow
async def test_a_token_for_one_service_follows_its_deploys_to_their_end(
    daemon: Daemon, tmp_path: Path
) -> None:
    # Such a token may not follow the instance's events feed (it shows every service): the
    # deploy learns its outcome from the deployment's record instead.
    created = json.loads(
        await daemon.ok(
            "tokens", "create", "web-ci", "--scope", "deploy", "--service", "web", "--json"
        )
    )
    assert created["service"] == "web"
    remote = ["--server", daemon.url, "--token", created["token"]]
    repo = make_repo(tmp_path / "web", {"app.py": SLEEPER})
    env = clean_env()

    deployed = await run_cli(
        *remote, "deploy", "--name", "web", "--remote", str(repo),
        "--run-cmd", f"{PYTHON} app.py", "--min-uptime", "0.3", env=env,
    )  # fmt: skip

    assert deployed.code == 0, deployed
    assert "==> succeeded" in deployed.out
    assert "web is running (deployment 1, pid " in deployed.out
    again = await run_cli(*remote, "deploy", "--name", "web", "--description", "two", env=env)
    assert "web is running (deployment 2, pid " in again.out, again
    failed = await run_cli(*remote, "deploy", "--name", "web", "--build-cmd", "exit 3", env=env)
    assert failed.one_line_error() == (
        "error: deploy 3 of web failed: build exited 3 (the previous release is still running)"
    )
    assert "==> failed: build exited 3" in failed.out
    rolled = await run_cli(*remote, "rollback", "web", "1", env=env)
    assert rolled.code == 0, rolled
    assert "==> succeeded" in rolled.out
    assert "web is running on deployment 4 (the release of deployment 1)" in rolled.out


@pytest.mark.slow
async def test_deploy_and_rollback_end_on_the_deployments_outcome(
    daemon: Daemon, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "worker", {"app.py": SLEEPER})
    base = ("deploy", "--name", "worker", "--remote", str(repo), "--min-uptime", "0.3")

    out = await daemon.ok(*base, "--run-cmd", f"{PYTHON} app.py")
    # Every step is shown, the deploy's last line too, before the outcome.
    *_, last_step, outcome = out.splitlines()
    assert last_step.startswith("==> succeeded: "), out
    assert outcome.startswith("worker is running (deployment 1, pid "), out
    # The next command is accepted at once: the deploy has freed the service.
    await daemon.ok(*base, "--run-cmd", f"{PYTHON} app.py --second")
    record = json.loads(await daemon.ok("rollback", "worker", "--json"))
    assert (record["status"], record["deployment"]) == ("running", 3)
    failed = await daemon.cli(*base, "--run-cmd", "exit 4", "--json")
    assert failed.code == 1
    message = json.loads(failed.out)["error"]["message"]
    assert message == (
        "deploy 4 of worker failed: the new release exited with code 4 before it was ready"
        " (the previous release is still running)"
    )


INFO = {
    "name": "web", "instance": "local", "status": "running", "health": "unknown",
    "pid": 12, "port": None, "restarts": 0, "deployment": 1, "description": "",
    "deploying": None, "since": 0.0, "message": "", "created_at": 0.0, "last_deploy_at": 0.0,
}  # fmt: skip
"""A service's info as a daemon of this version answers it."""


async def _serve(listeners: list[trio.SocketListener], body: bytes) -> None:
    """Answer every connection with ``body`` as JSON, as an HTTP server does."""

    async def answer(stream: trio.SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                request += chunk
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            await stream.send_all(head.encode() + body)

    await trio.serve_listeners(answer, listeners)


@pytest.mark.parametrize(
    ("args", "body", "words"),
    [
        (("list",), b'[{"name": "web"}]', "missing field"),
        (("get", "web"), json.dumps({**INFO, "status": "sleeping"}).encode(), "sleeping"),
        (("deployments", "web"), b"{}", "the daemon's answer could not be read"),
    ],
)
async def test_an_answer_the_cli_cannot_read_is_one_line(
    args: tuple[str, ...], body: bytes, words: str
) -> None:
    # Another program on the port, or a dployr of another version: never a KeyError.
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve, listeners, body)
        with trio.fail_after(WAIT):
            result = await run_cli(
                "--server", f"http://127.0.0.1:{port}", "--token", "t", *args, env=clean_env()
            )
        nursery.cancel_scope.cancel()
    line = result.one_line_error()
    assert line.startswith("error: the daemon's answer could not be read: "), line
    assert words in line
    assert "internal error" not in line
