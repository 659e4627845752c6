"""A real control plane (``dployr up``) driven by the real CLI, a real agent: a remote
service's log followed through ``dployr logs --follow``, and ``dployr instances remove``
closing the agent's open channel at once."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
import trio

from tests.agent.conftest import WAIT, agent
from tests.cli.conftest import Daemon, free_port
from tests.helpers import PYTHON, web_repo

pytestmark = pytest.mark.slow


async def test_a_remote_log_is_followed_through_the_cli_and_removal_cuts_the_agent_off(
    tmp_path: Path,
) -> None:
    plane = await Daemon.start(tmp_path / "plane")
    try:
        added = await plane.cli("instances", "add", "east")
        assert added.code == 0, added
        async with agent(
            tmp_path / "east", "--join", plane.url, "--token", added.out.strip()
        ) as east:
            await east.wait_for("connected to the control plane")
            port = free_port()
            await plane.ok(
                "deploy", "--name", "api", "--remote", str(web_repo(tmp_path / "repo")),
                "--run-cmd", f"{PYTHON} app.py", "--port", str(port), "--min-uptime", "0.3",
                "--instance", "east",
            )  # fmt: skip

            # The log, from its first line, across the history/live seam.
            follower = await trio.lowlevel.open_process(
                [PYTHON, "-m", "dployr", "logs", "api", "--follow", "--json", "--tail", "10000"],
                stdout=subprocess.PIPE,
                env=plane.env,
            )
            assert follower.stdout is not None
            lines: list[dict[str, object]] = []
            buffer = b""
            asked = False
            with trio.fail_after(WAIT):
                while not any("request /seam" in str(line["line"]) for line in lines):
                    chunk = await follower.stdout.receive_some(65536)
                    assert chunk, "the follow ended"
                    *done, buffer = (buffer + chunk).split(b"\n")
                    lines += [json.loads(text) for text in done]
                    if not asked and any("listening on" in str(n["line"]) for n in lines):
                        asked = True  # history is in: what comes next is live
                        async with httpx.AsyncClient(timeout=WAIT) as http:
                            await http.get(f"http://127.0.0.1:{port}/seam")
            follower.terminate()
            await follower.wait()
            await follower.stdout.aclose()
            assert [line["cursor"] for line in lines] == list(range(1, len(lines) + 1))

            # Removed: its open channel is closed now, and it is refused from then on.
            await plane.ok("instances", "remove", "east")
            await east.wait_for("the channel to the control plane closed")
            await east.wait_for("refused this agent (401)")
    finally:
        code, _ = await plane.stop()
        assert code == 0
