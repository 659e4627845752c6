"""A daemon killed with kill -9 and started again brings back exactly what should run."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

from dployr.engine.os import ports
from dployr.engine.os.warden import NAME
from tests.helpers import PYTHON, Daemon, make_repo, pids_of_service, wait_gone, web_repo

pytestmark = pytest.mark.slow

FAMILY = (
    "import subprocess, sys, time\n"
    f"subprocess.Popen([{PYTHON!r}, '-c', 'import time; time.sleep(1e6)'])\n"
    "print('family up', flush=True)\n"
    "time.sleep(1e6)\n"
)


async def deploy(daemon: Daemon, name: str, body: dict[str, object]) -> int:
    """Deploy and wait for the end; a release counts as started after 0.3 s up (not 5 s)."""
    body = {"restart": {"min_uptime": 0.3}, **body}
    async with daemon.client() as api:
        response = await api.post(f"/services/{name}/deploy", json=body)
        assert response.status_code == 202, response.text
        number = int(response.json()["id"])
    line = await daemon.wait_log(name, f"deploy {number}: ")
    await daemon.wait_log(name, f"deploy {number}: succeeded", cursor=int(line["cursor"]) - 1)
    return number


async def test_kill_9_then_start_runs_each_service_exactly_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    daemon = Daemon(data)
    await daemon.start()
    port = ports.allocate()
    family = make_repo(tmp_path / "family", {"family.py": FAMILY})
    await deploy(
        daemon,
        "web",
        {
            "remote": {"url": str(web_repo(tmp_path / "web"))},
            "run_cmd": f"{PYTHON} app.py",
            "port": port,
        },
    )
    await deploy(
        daemon, "family", {"remote": {"url": str(family)}, "run_cmd": f"{PYTHON} family.py"}
    )
    await deploy(daemon, "idle", {"remote": {"url": str(family)}, "run_cmd": f"{PYTHON} family.py"})
    async with daemon.client() as api:
        assert (await api.post("/services/idle/stop")).status_code == 200
        instance = (await api.get("/instances")).json()[0]["id"]
        before = {s["name"]: s for s in (await api.get("/services")).json()}
        history = (await api.get("/services/family/logs", params={"tail": 1000})).json()
    families = {name: pids_of_service(name, instance) for name in ("web", "family")}
    assert before["family"]["pid"] in families["family"]
    assert len(families["family"]) >= 2  # its shell or command, and the child it started

    # The worst case: the warden, which would kill every group with the daemon, is gone
    # too. Everything is left over, and the next daemon must clean up before it starts.
    os.kill(warden_of(daemon), signal.SIGKILL)
    await daemon.kill9()
    assert pids_of_service("family", instance) == families["family"]

    again = Daemon(data)
    await again.start()  # up means: leftovers killed, services started
    try:
        async with again.client() as api:
            after = {s["name"]: s for s in (await api.get("/services")).json()}
            assert after["web"]["status"] == "running"
            assert after["family"]["status"] == "running"
            assert after["idle"]["status"] == "stopped"
            for name in ("web", "family"):
                assert after[name]["deployment"] == before[name]["deployment"]
                assert after[name]["pid"] != before[name]["pid"]
            await again.wait_log("family", "family up", cursor=history["last_cursor"])
            # Exactly once: every old process is gone, and each family is whole once again.
            for name, old_family in families.items():
                new_family = pids_of_service(name, instance)
                assert after[name]["pid"] in new_family
                assert len(new_family) == len(old_family)
                assert not set(new_family) & set(old_family)
            assert pids_of_service("idle", instance) == []
            assert (await api.get("/services/web")).json()["port"] == port
            # The whole history is still there, cursors carry on.
            old = (
                await api.get("/services/family/logs", params={"after": 0, "limit": 10000})
            ).json()
            assert [line["line"] for line in old["lines"][: len(history["lines"])]] == [
                line["line"] for line in history["lines"]
            ]
            assert old["last_cursor"] > history["last_cursor"]
    finally:
        assert await again.stop() == 0
    assert pids_of_service("family", instance) == []


def warden_of(daemon: Daemon) -> int:
    assert daemon.process is not None
    (warden,) = [
        child.pid
        for child in psutil.Process(daemon.process.pid).children()
        if child.cmdline()[3:4] == [NAME]
    ]
    return warden


async def test_every_process_of_every_service_dies_with_the_daemon(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "data")
    await daemon.start()
    family = make_repo(tmp_path / "family", {"family.py": FAMILY})
    for name in ("one", "two"):
        await deploy(
            daemon, name, {"remote": {"url": str(family)}, "run_cmd": f"{PYTHON} family.py"}
        )
    async with daemon.client() as api:
        instance = (await api.get("/instances")).json()[0]["id"]
    pids = pids_of_service("one", instance) + pids_of_service("two", instance)
    assert len(pids) == 4  # each service's program and the child it started
    await daemon.kill9()
    await wait_gone(pids)
    assert pids_of_service("one", instance) == pids_of_service("two", instance) == []


async def test_an_interrupted_deploy_is_recorded_failed_and_the_previous_release_runs(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    daemon = Daemon(data)
    await daemon.start()
    repo = web_repo(tmp_path / "web")
    body = {"remote": {"url": str(repo)}, "run_cmd": f"{PYTHON} app.py", "port": ports.allocate()}
    first = await deploy(daemon, "web", body)
    async with daemon.client() as api:
        response = await api.post(
            "/services/web/deploy", json={**body, "build_cmd": "echo building; sleep 600"}
        )
        second = int(response.json()["id"])
        instance = (await api.get("/instances")).json()[0]["id"]
        serving = pids_of_service("web", instance)
    await daemon.wait_log("web", "building")
    await daemon.kill9()

    again = Daemon(data)
    await again.start()
    try:
        async with again.client() as api:
            service = (await api.get("/services/web")).json()
            assert service["status"] == "running"
            assert service["deployment"] == first
            records = {d["id"]: d for d in (await api.get("/services/web/deployments")).json()}
            assert records[second]["status"] == "failed"
            assert records[second]["error"] == "interrupted: the daemon stopped during the deploy"
            assert records[first]["status"] == "succeeded"
            logs = (await api.get("/services/web/logs", params={"tail": 50})).json()["lines"]
            assert any(
                line["line"]
                == f"deploy {second} failed: interrupted: the daemon stopped during the deploy"
                for line in logs
            )
            now = pids_of_service("web", instance)
            assert service["pid"] in now
            assert len(now) == len(serving)  # one release, not two
            assert not set(now) & set(serving)
    finally:
        assert await again.stop() == 0
