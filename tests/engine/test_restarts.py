"""Restart policy, health restarts and status words, with real processes (issue 11, 7-10)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import attrs
import psutil
import pytest
import trio

from dployr.engine.os import ports
from dployr.models import (
    Health,
    HealthKind,
    HealthOptions,
    InvalidSetting,
    RestartMode,
    RestartPolicy,
    ServiceSettings,
    ServiceStatus,
    Source,
)
from dployr.protocol.events import Change, StatusChanged
from dployr.protocol.messages import (
    Deploy,
    ReadLogs,
    Restart,
    SettingsChange,
    Start,
    UpdateSettings,
)
from tests.helpers import PYTHON, commit, make_repo, web_repo

from .conftest import Engine, drain, start_engine, web_settings

pytestmark = pytest.mark.slow

WORKER = """\
import os, signal, sys
if os.path.exists("CRASH"):  # a crash loop: every start after the first dies at once
    print("dying at start", file=sys.stderr, flush=True)
    sys.exit(1)
def crash(*_):
    open("CRASH", "w").close()
    sys.exit(1)
signal.signal(signal.SIGUSR1, lambda *_: sys.exit(0))  # a clean exit
signal.signal(signal.SIGUSR2, lambda *_: sys.exit(1))  # a crash
signal.signal(signal.SIGHUP, crash)  # a crash, then a crash at every start
print("worker up", os.getpid(), flush=True)
while True:
    signal.pause()
"""


def worker(tmp_path: Path, **settings: object) -> ServiceSettings:
    repo = make_repo(tmp_path / "worker", {"worker.py": WORKER})
    return ServiceSettings(
        source=Source(str(repo)),
        run_cmd=f"{PYTHON} worker.py",
        stop_grace=2.0,
        **settings,  # type: ignore[arg-type]
    )


async def signal_worker(engine: Engine, name: str, signum: int) -> int:
    """Send ``signum`` to the worker's process once it handles signals; return its pid."""
    pid = (await engine.status(name)).pid
    assert pid is not None
    await engine.wait_log(name, f"worker up {pid}")
    os.kill(pid, signum)
    return pid


def statuses(seen: list[Change], name: str) -> list[ServiceStatus]:
    return [c.status for c in seen if isinstance(c, StatusChanged) and c.service == name]


async def system_lines(engine: Engine, name: str) -> list[str]:
    page = await engine.handle.request(ReadLogs(name, tail=500, streams=frozenset({"system"})))
    return [line.line for line in page.lines]


async def test_a_health_restart_gives_each_new_process_a_fresh_start(
    engine: Engine, tmp_path: Path
) -> None:
    # "Restart after 3 failed checks", and a release that never gets healthy again.
    health = HealthOptions(
        interval=0.1, timeout=1.0, failures=2, successes=1, start_period=0.6, restart_after=3
    )
    policy = RestartPolicy(delay=0.1, max_delay=0.2, max_restarts=3, window=60, min_uptime=0.5)
    settings = web_settings(
        web_repo(tmp_path / "repo"), ports.allocate(), health_check="/health", health=health
    )
    deployment = await engine.deploy("web", attrs.evolve(settings, restart=policy))
    (engine.data_dir / "services" / "web" / "releases" / str(deployment) / "UNHEALTHY").touch()
    info = await engine.wait_status("web", ServiceStatus.FAILED)
    # The health restarts spent the same budget as crashes, and the reason says why.
    assert info.message == (
        "gave up after 3 restarts in 60 s (last: 3 health checks failed in a row: GET /health: 503)"
    )
    page = await engine.handle.request(ReadLogs("web", tail=500, streams=frozenset({"system"})))
    restarts = [line for line in page.lines if line.line.startswith("restarting: ")]
    # Every process was given its own count from zero: never "4 in a row", "5 in a row".
    assert [line.line for line in restarts] == [
        "restarting: 3 health checks failed in a row: GET /health: 503"
    ] * 4
    # And its own start period: no new process was restarted within it.
    starts = [
        line
        for line in page.lines
        if line.line.startswith(f"release release-{deployment}.") and " started " in line.line
    ]
    for restart in restarts[1:]:
        start = max(line.ts for line in starts if line.ts <= restart.ts)
        assert restart.ts - start >= health.start_period


async def kill_repeatedly(engine: Engine, name: str, times: int) -> None:
    """An operator (or the OOM killer) kills the process each time it has settled."""
    for _ in range(times):
        info = await engine.wait_info(
            name, lambda info: info.status in (ServiceStatus.RUNNING, ServiceStatus.FAILED)
        )
        if info.status is ServiceStatus.FAILED:
            return
        pid = info.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await engine.wait_info(name, lambda info, killed=pid: info.pid != killed)


async def test_a_generous_policy_keeps_a_service_up_that_is_killed_again_and_again(
    engine: Engine, tmp_path: Path
) -> None:
    generous = RestartPolicy(delay=0.1, max_delay=1, max_restarts=50, window=60, min_uptime=0.3)
    await engine.deploy("steady", worker(tmp_path, restart=generous))
    await kill_repeatedly(engine, "steady", 8)
    info = await engine.wait_status("steady", ServiceStatus.RUNNING)
    assert info.restarts == 8
    assert info.message == "restarted after: killed by SIGKILL"


async def test_the_default_budget_fails_a_service_that_is_killed_again_and_again(
    engine: Engine, tmp_path: Path
) -> None:
    # Today's defaults (5 restarts in 60 s), with a short min_uptime for the test's sake.
    await engine.deploy("fragile", worker(tmp_path, restart=RestartPolicy(min_uptime=0.3)))
    await kill_repeatedly(engine, "fragile", 8)
    info = await engine.wait_status("fragile", ServiceStatus.FAILED)
    assert info.message == "gave up after 5 restarts in 60 s (last: killed by SIGKILL)"
    assert info.pid is None


async def test_on_failure_leaves_a_clean_exit_stopped_and_restarts_a_crash(
    engine: Engine, tmp_path: Path
) -> None:
    policy = RestartPolicy(mode=RestartMode.ON_FAILURE, min_uptime=0.3)
    await engine.deploy("job", worker(tmp_path, restart=policy))
    first = await signal_worker(engine, "job", signal.SIGUSR2)  # a crash: restarted
    await engine.wait_info(
        "job", lambda info: info.status is ServiceStatus.RUNNING and info.pid != first
    )
    pid = await signal_worker(engine, "job", signal.SIGUSR1)  # a clean exit: not restarted
    info = await engine.wait_status("job", ServiceStatus.STOPPED)
    assert info.message == "exited normally; not restarted (restart policy: on-failure)"
    assert info.pid is None
    assert info.restarts == 1
    assert engine.pids("job") == []
    # start brings it back.
    info = await engine.handle.request(Start("job"))
    assert info.status is ServiceStatus.RUNNING
    assert info.pid not in (None, first, pid)


async def test_never_leaves_a_crash_failed(engine: Engine, tmp_path: Path) -> None:
    # Delays that never apply: nothing is restarted, the health check included.
    policy = RestartPolicy(mode=RestartMode.NEVER, delay=600, max_delay=600, min_uptime=0.3)
    health = HealthOptions(kind=HealthKind.COMMAND, command="true", interval=0.1)
    await engine.deploy("once", worker(tmp_path, restart=policy, health=health))
    assert (await engine.status("once")).health is Health.HEALTHY
    await signal_worker(engine, "once", signal.SIGUSR2)
    info = await engine.wait_status("once", ServiceStatus.FAILED)
    assert info.message == "exited with code 1; not restarted (restart policy: never)"
    assert info.restarts == 0
    assert engine.pids("once") == []


async def test_a_changed_policy_applies_at_the_next_start(engine: Engine, tmp_path: Path) -> None:
    await engine.deploy("job", worker(tmp_path, restart=RestartPolicy(min_uptime=0.3)))
    never = RestartPolicy(mode=RestartMode.NEVER, min_uptime=0.3)
    await engine.handle.request(UpdateSettings("job", SettingsChange(restart=never)))
    # The running process keeps the policy it started with.
    first = await signal_worker(engine, "job", signal.SIGUSR2)
    await engine.wait_info(
        "job", lambda info: info.status is ServiceStatus.RUNNING and info.pid != first
    )
    await engine.handle.request(Restart("job"))  # the next start takes the stored policy
    await signal_worker(engine, "job", signal.SIGUSR2)
    info = await engine.wait_status("job", ServiceStatus.FAILED)
    assert info.message == "exited with code 1; not restarted (restart policy: never)"


def test_a_policy_whose_crash_loop_would_never_end_is_refused() -> None:
    # 0 + 1 + 2 + 4 + 8 + 16 + 30 + 30 + 30 + 30 s of backoff do not fit in 60 s.
    with pytest.raises(InvalidSetting, match="add up to 151 s, not less than restart-window"):
        RestartPolicy(max_restarts=10)
    RestartPolicy(max_restarts=10, delay=0.5, max_delay=5)  # 34.5 s: fine
    RestartPolicy(mode=RestartMode.NEVER, max_restarts=10)  # never restarts: no loop


async def test_a_crash_loop_reads_restarting_until_it_fails(engine: Engine, tmp_path: Path) -> None:
    policy = RestartPolicy(delay=0.2, max_delay=0.4, max_restarts=3, window=30, min_uptime=1)
    await engine.deploy("loop", worker(tmp_path, restart=policy))
    seen: list[Change] = []
    with engine.handle.subscribe_changes() as changes:
        await signal_worker(engine, "loop", signal.SIGHUP)  # from now on it dies at every start
        await engine.wait_info(
            "loop", lambda info: info.status is ServiceStatus.FAILED, seen, changes
        )
    # Never "running" between the restarts, though each new process did start.
    assert statuses(seen, "loop") == [ServiceStatus.RESTARTING, ServiceStatus.FAILED]
    lines = await system_lines(engine, "loop")
    assert "restarting in 0.2 s" in lines
    assert "restarting in 0.4 s" in lines
    assert lines.count("exited with code 1") == 4


async def test_deploying_shows_while_the_older_release_serves(
    engine: Engine, tmp_path: Path
) -> None:
    repo = web_repo(tmp_path / "repo")
    port = ports.allocate()
    first = await engine.deploy("web", web_settings(repo, port))
    old = await engine.status("web")
    gate = tmp_path / "gate"
    wait = f"import os, time\nwhile not os.path.exists({str(gate)!r}):\n    time.sleep(0.01)\n"
    commit(repo, {"build.py": wait})
    slow = web_settings(repo, port, build_cmd=f"{PYTHON} build.py")
    seen: list[Change] = []
    with engine.handle.subscribe_changes() as changes:
        second = (await engine.handle.request(Deploy("web", slow))).id
        info = await engine.wait_info(
            "web", lambda info: info.status is ServiceStatus.DEPLOYING, seen, changes
        )
        # The old release still serves, and the status says a deploy is under way.
        assert (info.deployment, info.deploying, info.pid) == (first, second, old.pid)
        gate.touch()
        await engine.wait_deployment("web", second)
        await engine.wait_info(
            "web", lambda info: info.status is ServiceStatus.RUNNING, seen, changes
        )
        await drain(changes, seen)
    assert statuses(seen, "web") == [ServiceStatus.DEPLOYING, ServiceStatus.RUNNING]
    info = await engine.status("web")
    assert (info.deployment, info.deploying) == (second, None)
    assert info.pid is not None
    assert abs(info.since - psutil.Process(info.pid).create_time()) < 1.0


async def test_a_zero_downtime_restart_shows_restarting_and_moves_since(
    engine: Engine, tmp_path: Path
) -> None:
    await engine.deploy("web", web_settings(web_repo(tmp_path / "repo"), ports.allocate()))
    before = await engine.status("web")
    seen: list[Change] = []
    with engine.handle.subscribe_changes() as changes:
        info = await engine.handle.request(Restart("web"))
        await drain(changes, seen)  # what the restart published is all there once it returned
    assert statuses(seen, "web") == [ServiceStatus.RESTARTING, ServiceStatus.RUNNING]
    assert info.status is ServiceStatus.RUNNING
    assert info.pid not in (None, before.pid)
    assert info.since > before.since
    assert abs(info.since - psutil.Process(info.pid).create_time()) < 1.0


async def test_since_follows_a_restart_after_a_crash(engine: Engine, tmp_path: Path) -> None:
    await engine.deploy("job", worker(tmp_path, restart=RestartPolicy(min_uptime=1)))
    first = (await engine.status("job")).pid
    assert first is not None
    killed = time.time()
    os.kill(first, signal.SIGKILL)
    info = await engine.wait_info(
        "job", lambda info: info.status is ServiceStatus.RUNNING and info.pid != first
    )
    # Since the new process started, not since it counted as running (1 s later).
    started = await engine.wait_log("job", f"started (pid {info.pid})")
    assert killed < info.since <= started.ts


async def test_last_deploy_at_and_since_survive_a_daemon_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = web_settings(web_repo(tmp_path / "repo"), ports.allocate())
    async with trio.open_nursery() as nursery:
        instance, store = start_engine(data_dir)
        engine = Engine(instance, await nursery.start(instance.run), data_dir)
        deployment = await engine.deploy("web", settings)
        before = await engine.status("web")
        nursery.cancel_scope.cancel()
    record = store.get_deployment("web", deployment)
    assert record is not None
    store.close()
    async with trio.open_nursery() as nursery:
        instance, store = start_engine(data_dir)
        engine = Engine(instance, await nursery.start(instance.run), data_dir)
        info = await engine.status("web")
        assert info.last_deploy_at == before.last_deploy_at == record.created_at
        assert info.status is ServiceStatus.RUNNING
        assert info.pid not in (None, before.pid)
        assert info.since > before.since
        assert abs(info.since - psutil.Process(info.pid).create_time()) < 1.0
        nursery.cancel_scope.cancel()
    store.close()
