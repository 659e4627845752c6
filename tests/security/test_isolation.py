"""Services do not get the daemon's environment, and as root each runs as its own user,
unable to read the daemon's keys, token and database or another service's files."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
import trio

from tests.helpers import PYTHON, Daemon, make_repo

# A service user is an id of its own data dir's (no account is made), so these run beside
# the rest of the suite.
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


PROBE = """\
import json, os, sys, time
found = {}
for path in sys.argv[1:]:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as file:
                file.read(1)
        found[path] = "read"
    except OSError as error:
        found[path] = type(error).__name__
print("probe", os.getuid(), os.getgid(), os.getgroups(), json.dumps(found), flush=True)
time.sleep(1e6)
"""
"""Tries to read each path of its arguments; prints its ids and what it could read."""
SYSTEM_PYTHON = "/usr/bin/python3"
"""An interpreter every user can run (the tests' own lives under /root, closed to others)."""


async def test_as_root_each_service_is_its_own_user_and_reads_nothing_of_the_daemon(
    tmp_path: Path,
) -> None:
    # pytest's folders are 0700: the data dir lives where a service user may pass.
    data = Path(tempfile.mkdtemp(prefix="dployr-isolation-"))
    try:
        daemon = Daemon(data, shared_user=False)
        await daemon.start()
        try:
            await check_isolation(daemon, data, tmp_path)
        finally:
            assert await daemon.stop() == 0
    finally:
        shutil.rmtree(data)


async def check_isolation(daemon: Daemon, data: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"probe.py": PROBE, "mine.txt": "keeper's own\n"})
    async with daemon.client() as api:
        keeper = {
            "remote": {"url": str(repo)},
            "run_cmd": "/bin/sleep 100000",
            "secrets": {"API_KEY": "hush"},
        }
        assert (await api.post("/services/keeper/deploy", json=keeper)).status_code == 202
        await daemon.wait_log("keeper", "succeeded")
        pid = (await api.get("/services/keeper")).json()["pid"]
        keeper_release = next((data / "services" / "keeper" / "releases").iterdir())
        targets = [
            data / "admin-token",
            data / "master.key",
            data / "dployr.db",
            data / "dashboard-key",
            Path(f"/proc/{pid}/environ"),
            keeper_release / "mine.txt",
            data / "services" / "keeper" / "data",
            data / "services" / "keeper" / "logs",
        ]
        assert (data / "master.key").exists()  # made for the secret
        prober = {
            "remote": {"url": str(repo)},
            "run_cmd": " ".join([SYSTEM_PYTHON, "probe.py", "mine.txt", *map(str, targets)]),
        }
        assert (await api.post("/services/prober/deploy", json=prober)).status_code == 202
        line = str((await daemon.wait_log("prober", "probe "))["line"])
    _, uid, gid, rest = line.split(" ", 3)
    groups, found = rest.split("] ", 1)
    assert int(uid) == int(gid) != 0
    assert int(uid) != os.stat(data / "services" / "keeper" / "data").st_uid
    assert groups == "["  # no supplementary group
    readable = {path for path, what in json.loads(found).items() if what == "read"}
    assert readable == {"mine.txt"}  # its own release only


async def test_dployr_up_says_in_one_line_that_services_share_its_user(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPLOYR_")}
    up = [PYTHON, "-m", "dployr", "up", "--data-dir", str(tmp_path / "data"), "--port", "0"]
    process = await trio.lowlevel.open_process(
        [*up, "--shared-user"], stdout=subprocess.PIPE, env=env
    )
    assert process.stdout is not None
    said = b""
    try:
        with trio.fail_after(30):
            while b"services run as" not in said:
                chunk = await process.stdout.receive_some(4096)
                assert chunk, said
                said += chunk
    finally:
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await process.wait() == 0
    (line,) = [line for line in said.decode().splitlines() if "services run as" in line]
    assert line == (
        "services run as root, dployr's own user: they can read its data dir, keys and token"
        " (see docs/security.md)"
    )


async def test_as_root_a_data_dir_services_cannot_reach_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    # pytest's folders are 0700, as root's home is: a service user could not pass.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPLOYR_")}
    with trio.fail_after(30):
        done = await trio.run_process(
            [PYTHON, "-m", "dployr", "up", "--data-dir", str(tmp_path / "data"), "--port", "0"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
        )
    assert done.returncode == 1
    closed = next(f for f in [tmp_path, *tmp_path.parents] if not f.stat().st_mode & 0o001)
    assert done.stderr.decode() == (
        f"error: services run as users of their own, who cannot pass through {closed} (mode"
        f" {closed.stat().st_mode & 0o7777:o}) to the data dir {tmp_path / 'data'}: choose a"
        " --data-dir they can reach (such as /var/lib/dployr), or run them as root with"
        " --shared-user\n"
    )
    assert not (tmp_path / "data").exists()  # nothing written


WHO = "import os, time\nprint('who', os.getuid(), os.getgid(), flush=True)\ntime.sleep(1e6)\n"


async def test_as_root_a_service_may_name_the_user_it_runs_as(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    data = Path(tempfile.mkdtemp(prefix="dployr-user-"))
    try:
        daemon = Daemon(data, shared_user=False)
        await daemon.start()
        try:
            repo = make_repo(tmp_path / "repo", {"who.py": WHO})
            body = {"remote": {"url": str(repo)}, "run_cmd": f"{SYSTEM_PYTHON} who.py"}
            async with daemon.client() as api:
                refused = await api.post(
                    "/services/who/deploy", json={**body, "user": "no-such-user"}
                )
                assert refused.status_code == 422, refused.text
                assert refused.json()["error"]["message"] == (
                    "there is no user 'no-such-user' on this machine"
                )
                assert (await api.get("/services/who")).status_code == 404  # nothing made
                response = await api.post("/services/who/deploy", json={**body, "user": "nobody"})
                assert response.status_code == 202, response.text
                line = str((await daemon.wait_log("who", "who "))["line"])
                assert line.split()[1:] == [str(nobody.pw_uid), str(nobody.pw_gid)]
                settings = (await api.get("/services/who/settings")).json()["settings"]
                assert settings["user"] == "nobody"
                await daemon.wait_log("who", "deploy 1: succeeded")
                # Cleared, it waits for the next deploy like every setting; that deploy
                # runs it as a user of its own again.
                changed = await api.patch("/services/who/settings", json={"user": None})
                assert changed.status_code == 200, changed.text
                assert "user" in changed.json()["pending"]
                tail = (await api.get("/services/who/logs", params={"tail": 0})).json()
                assert (await api.post("/services/who/deploy")).status_code == 202
                line = str(
                    (await daemon.wait_log("who", "who ", cursor=tail["last_cursor"]))["line"]
                )
                assert int(line.split()[1]) not in (0, nobody.pw_uid)
        finally:
            assert await daemon.stop() == 0
    finally:
        shutil.rmtree(data)
