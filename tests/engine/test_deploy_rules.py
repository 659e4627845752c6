"""The rules a deploy keeps with the commands around it, on a real instance."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import trio

from dployr.engine.errors import DeployInProgress
from dployr.models import DeploymentStatus, RestartPolicy, ServiceSettings, ServiceStatus, Source
from dployr.protocol.errors import Error
from dployr.protocol.messages import (
    Deploy,
    ListDeployments,
    Rollback,
    SettingsChange,
    Stop,
    UpdateSettings,
)
from tests.helpers import PYTHON, commit, git, make_repo

from .conftest import QUICK_START, Engine, start_engine

SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(1e6)\n"


def worker(repo: Path, **changes: object) -> ServiceSettings:
    settings = ServiceSettings(source=Source(str(repo)), run_cmd=f"{PYTHON} w.py")
    return attrs.evolve(settings, **{"restart": QUICK_START, **changes})  # type: ignore[arg-type]


async def test_commands_during_the_readiness_wait_are_refused_or_cancel_it_at_once(
    engine: Engine, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "w", {"w.py": SLEEPER})
    slow = worker(repo, restart=RestartPolicy(min_uptime=60))
    first = await engine.handle.request(Deploy("w", slow))
    await engine.wait_log("w", "waiting for it to stay up 60 s")
    with trio.fail_after(2):  # refused now, not once the wait is over
        with pytest.raises(Error, match=f"deploy {first.id} of w is already running") as busy:
            await engine.handle.request(Deploy("w", slow))
        assert busy.value.code == "conflict"
        assert isinstance(busy.value.__cause__, DeployInProgress)
        with pytest.raises(Error, match="already running") as busy:
            await engine.handle.request(UpdateSettings("w", SettingsChange(description="x")))
        assert isinstance(busy.value.__cause__, DeployInProgress)
        with pytest.raises(Error, match="already running") as busy:
            await engine.handle.request(Rollback("w"))
        assert isinstance(busy.value.__cause__, DeployInProgress)
    with trio.fail_after(10):  # a stop cancels the deploy rather than waiting for it
        info = await engine.handle.request(Stop("w"))
    assert info.status is ServiceStatus.STOPPED
    record = engine.instance.store.get_deployment("w", first.id)
    assert record is not None
    assert record.status is DeploymentStatus.FAILED
    assert engine.pids("w") == []


async def test_a_commit_pin_is_not_kept_even_when_the_first_deploy_fails(
    engine: Engine, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "w", {"w.py": "raise SystemExit('broken')\n"})
    pinned = git(repo, "rev-parse", "HEAD")
    settings = worker(repo, source=Source(str(repo), commit=pinned))
    assert await engine.deploy("w", settings) == 1
    record = engine.instance.store.get_service("w")
    assert record is not None
    assert record.settings.source.commit is None


async def test_the_release_rollback_goes_back_to_is_kept_whatever_its_number(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    instance, _ = start_engine(tmp_path / "data", keep_releases=2)
    engine = Engine(instance, await nursery.start(instance.run), tmp_path / "data")
    repo = make_repo(tmp_path / "w", {"w.py": SLEEPER})
    for version in range(3):
        commit(repo, {"VERSION": f"{version}\n"})
        await engine.deploy("w", worker(repo))
    back = await engine.handle.request(Rollback("w", 2))  # runs folder 2 as deployment 4
    assert await engine.wait_deployment("w", back.id) is DeploymentStatus.SUCCEEDED
    await engine.deploy("w", worker(repo))  # 5
    # Folder 2 ran just before 5: an undo goes back to it.
    releases = tmp_path / "data" / "services" / "w" / "releases"
    assert sorted(int(p.name) for p in releases.iterdir()) == [2, 5]
    undo = await engine.handle.request(Rollback("w"))
    assert (undo.id, undo.rollback_of, undo.folder) == (6, 4, 2)
    assert await engine.wait_deployment("w", undo.id) is DeploymentStatus.SUCCEEDED
    # Rolling back to the release running now is refused.
    with pytest.raises(Error, match="deployment 2's release is the one running now") as refused:
        await engine.handle.request(Rollback("w", 2))
    assert refused.value.code == "conflict"
    records = await engine.handle.request(ListDeployments("w"))
    assert [d.id for d in records] == [6, 5, 4, 3, 2, 1]
    nursery.cancel_scope.cancel()


async def test_a_failed_release_is_not_started_again_by_a_failed_deploy(
    engine: Engine, tmp_path: Path
) -> None:
    dies_later = "import time, sys\ntime.sleep(0.5)\nsys.exit(1)\n"
    repo = make_repo(tmp_path / "w", {"w.py": dies_later})
    await engine.deploy("w", worker(repo))
    await engine.wait_status("w", ServiceStatus.FAILED)
    commit(repo, {"w.py": "raise SystemExit('still broken')\n"})
    await engine.deploy("w", worker(repo))
    info = await engine.status("w")
    assert info.status is ServiceStatus.FAILED
    assert engine.pids("w") == []
