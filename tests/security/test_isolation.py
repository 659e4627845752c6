"""Services do not get the daemon's environment: only a documented base and their own."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers import PYTHON, Daemon, make_repo

pytestmark = pytest.mark.slow

SHOW_ENV = (
    "import json, os, time\n"
    "print('env', json.dumps(dict(os.environ)), flush=True)\n"
    "time.sleep(1e6)\n"
)


async def test_a_service_gets_a_clean_environment_not_the_daemon_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the shell that started `dployr up` held: a cloud key must not reach a service.
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("TZ", "Europe/Paris")
    daemon = Daemon(tmp_path / "data")
    await daemon.start()
    try:
        repo = make_repo(tmp_path / "repo", {"show.py": SHOW_ENV})
        async with daemon.client() as api:
            body = {"remote": {"url": str(repo)}, "run_cmd": f"{PYTHON} show.py"}
            response = await api.post(
                "/services/shown/deploy", json={**body, "env_vars": {"GREETING": "hi"}}
            )
            assert response.status_code == 202, response.text
        line = await daemon.wait_log("shown", "env ")
        env = json.loads(str(line["line"]).removeprefix("env "))
    finally:
        assert await daemon.stop() == 0
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert env["GREETING"] == "hi"
    assert env["PATH"] == os.environ["PATH"]
    assert env["HOME"] == os.environ["HOME"]
    assert env["LANG"] == "C.UTF-8"
    assert env["TZ"] == "Europe/Paris"
    assert env["TESTS_RUN"] == os.environ["TESTS_RUN"]  # passed on by name: --pass-env
    assert env["DPLOYR_SERVICE"] == "shown"
    ours = {"GREETING", "TESTS_RUN", "PATH", "HOME", "LANG", "TZ", "PWD"}
    # The rest is dployr's own marks (and what the interpreter itself sets, LC_CTYPE).
    assert {k for k in env if k not in ours and not k.startswith("DPLOYR_")} <= {"LC_CTYPE"}
