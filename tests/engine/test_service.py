"""The service engine end to end, with real processes, git repositories and sockets."""

from __future__ import annotations

import contextlib
from pathlib import Path

import attrs
import httpx
import psutil
import pytest
import trio

from dployr.engine.errors import DeployInProgress
from dployr.engine.os import ports
from dployr.logs.values import lines_of
from dployr.models import (
    DeploymentStatus,
    RestartPolicy,
    RolloutMode,
    ServiceSettings,
    ServiceStatus,
    Source,
)
from dployr.protocol.errors import Error
from dployr.protocol.events import Change, StatusChanged
from dployr.protocol.feed import Gap
from dployr.protocol.messages import (
    Delete,
    Deploy,
    GetService,
    ListDeployments,
    ListServices,
    ReadLogs,
    Restart,
    SetEnv,
    SettingsChange,
    Start,
    Stop,
    UpdateSettings,
)
from tests.helpers import PYTHON, commit, git, make_repo, web_repo

from .conftest import FAST_RESTARTS, QUICK_START, Engine, started_children, web_settings

pytestmark = pytest.mark.slow


async def test_deploy_runs_the_service_and_answers_on_its_port(
    engine: Engine, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    repo = web_repo(tmp_path / "repo")
    port = ports.allocate()
    deployment = await engine.deploy("web", web_settings(repo, port))
    info = await engine.status("web")
    assert info.status is ServiceStatus.RUNNING
    assert info.deployment == deployment
    assert info.port == port
    assert info.pid is not None
    assert psutil.pid_exists(info.pid)
    response = await http.get(f"http://127.0.0.1:{port}/")
    assert response.text == f"hello v1 {deployment}"
    # The app got its private port as PORT, which is not the public one.
    assert (await http.get(f"http://127.0.0.1:{port}/env/PORT")).text != str(port)
    record = engine.instance.store.get_deployment("web", deployment)
    assert record is not None
    assert record.status is DeploymentStatus.SUCCEEDED
    assert record.revision == git(repo, "rev-parse", "HEAD")
    release = engine.data_dir / "services" / "web" / "releases" / str(deployment)
    assert (release / "app.py").is_file()


async def test_a_worker_without_a_port_gets_no_proxy(engine: Engine, tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo", {"worker.py": "import time\nprint('up', flush=True)\ntime.sleep(1e6)\n"}
    )
    settings = ServiceSettings(
        source=Source(str(repo)), run_cmd=f"{PYTHON} worker.py", restart=QUICK_START
    )
    with engine.handle.subscribe_supervision() as events:
        await engine.deploy("worker", settings)
        started = await started_children(events)
    assert (await engine.status("worker")).status is ServiceStatus.RUNNING
    assert "process" in started
    assert not [child for child in started if child.startswith("proxy")]


async def test_a_crash_restarts_with_the_crash_output_in_history(
    engine: Engine, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    port = ports.allocate()
    await engine.deploy("web", web_settings(web_repo(tmp_path / "repo"), port))
    first = (await engine.status("web")).pid
    seen: list[Change] = []
    with engine.handle.subscribe_changes() as changes:
        with pytest.raises(httpx.HTTPError):
            await http.get(f"http://127.0.0.1:{port}/crash")
        await engine.wait_info(
            "web",
            lambda info: info.status is ServiceStatus.RUNNING and info.pid != first,
            seen,
            changes,
        )
    statuses = [c.status for c in seen if isinstance(c, StatusChanged)]
    assert statuses == [ServiceStatus.RESTARTING, ServiceStatus.RUNNING]
    info = await engine.status("web")
    assert info.restarts == 1
    page = await engine.handle.request(ReadLogs("web", tail=50))
    text = [(line.stream, line.line) for line in page.lines]
    assert ("stderr", "crashing on request") in text
    crash = text.index(("stderr", "crashing on request"))
    assert ("system", "exited with code 3") in text[crash:]
    assert any(s == "system" and line.startswith("restarting") for s, line in text[crash:])
    assert (await http.get(f"http://127.0.0.1:{port}/")).status_code == 200


async def test_a_crash_loop_fails_the_service_and_a_sibling_keeps_its_pid(
    engine: Engine, tmp_path: Path
) -> None:
    good = await engine.deploy(
        "steady", web_settings(web_repo(tmp_path / "good"), ports.allocate())
    )
    sibling = (await engine.status("steady")).pid
    app = "import sys, time\ntime.sleep(0.5)\nprint('dying', file=sys.stderr)\nsys.exit(1)\n"
    repo = make_repo(tmp_path / "bad", {"app.py": app})
    settings = ServiceSettings(
        source=Source(str(repo)), run_cmd=f"{PYTHON} app.py", restart=FAST_RESTARTS
    )
    # A worker that stays up long enough to count as started, then dies, again and again.
    assert await engine.deploy("crashy", settings) == 1
    info = await engine.wait_status("crashy", ServiceStatus.FAILED)
    assert info.message == "gave up after 3 restarts in 30 s (last: exited with code 1)"
    page = await engine.handle.request(ReadLogs("crashy", tail=100, streams=frozenset({"system"})))
    assert any("gave up after 3 restarts" in line.line for line in page.lines)
    steady = await engine.status("steady")
    assert steady.status is ServiceStatus.RUNNING
    assert steady.pid == sibling
    assert steady.deployment == good
    # start on a failed service resets its budget: it crash-loops again, from zero.
    info = await engine.handle.request(Start("crashy"))
    await engine.wait_status("crashy", ServiceStatus.FAILED)


async def test_a_release_that_dies_at_start_fails_its_deploy_and_the_old_one_keeps_running(
    engine: Engine, tmp_path: Path
) -> None:
    crasher = "import sys\nprint('booting', flush=True)\nraise SystemExit('no config found')\n"
    repo = make_repo(tmp_path / "worker", {"app.py": "import time\ntime.sleep(1e6)\n"})
    settings = ServiceSettings(
        source=Source(str(repo)), run_cmd=f"{PYTHON} app.py", restart=QUICK_START
    )
    first = await engine.deploy("worker", settings)
    pid = (await engine.status("worker")).pid
    commit(repo, {"app.py": crasher})

    second = await engine.deploy("worker", settings)

    record = engine.instance.store.get_deployment("worker", second)
    assert record is not None
    assert record.status is DeploymentStatus.FAILED
    assert record.error == "the new release exited with code 1 before it was ready"
    # stdout and stderr are two pipes: their order between them is not kept.
    assert set(record.output_tail) == {"booting", "no config found"}
    info = await engine.status("worker")
    assert (info.status, info.deployment) == (ServiceStatus.RUNNING, first)
    # A worker rolls out stop-first, so its old release was stopped, then started again.
    assert info.pid != pid
    assert engine.pids("worker") == [info.pid]


async def test_a_first_deploy_that_dies_at_start_fails(engine: Engine, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "crasher", {"app.py": "raise ImportError('no module named x')\n"})
    settings = ServiceSettings(source=Source(str(repo)), run_cmd=f"{PYTHON} app.py")
    deployment = await engine.deploy("crasher", settings)
    record = engine.instance.store.get_deployment("crasher", deployment)
    assert record is not None
    assert record.status is DeploymentStatus.FAILED
    assert record.output_tail[-1] == "ImportError: no module named x"
    info = await engine.status("crasher")
    assert info.status is ServiceStatus.FAILED
    assert info.deployment is None
    assert engine.pids("crasher") == []


async def test_stop_kills_grandchildren_and_start_brings_it_back(
    engine: Engine, tmp_path: Path
) -> None:
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1e6)"
    script = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([{PYTHON!r}, '-c', {stubborn!r}])\n"
        "print('spawned', flush=True)\n"
        "time.sleep(1e6)\n"
    )
    repo = make_repo(tmp_path / "repo", {"tree.py": script})
    settings = ServiceSettings(
        source=Source(str(repo)), run_cmd=f"{PYTHON} tree.py", stop_grace=1.0
    )
    await engine.deploy("tree", settings)
    await engine.wait_log("tree", "spawned")
    family = engine.pids("tree")
    assert len(family) >= 2  # the service and its grandchild
    info = await engine.handle.request(Stop("tree"))
    assert info.status is ServiceStatus.STOPPED
    assert info.pid is None
    assert [
        p for p in family if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
    ] == []
    cursor = (await engine.handle.request(ReadLogs("tree", tail=1))).last_cursor
    info = await engine.handle.request(Start("tree"))
    assert info.status is ServiceStatus.RUNNING
    await engine.wait_log("tree", "spawned", after=cursor)
    assert len(engine.pids("tree")) >= 2


async def test_a_failing_build_leaves_the_old_release_serving(
    engine: Engine, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    repo = web_repo(tmp_path / "repo")
    port = ports.allocate()
    first = await engine.deploy("web", web_settings(repo, port))
    pid = (await engine.status("web")).pid
    commit(repo, {"VERSION": "v2\n"})
    broken = web_settings(repo, port, build_cmd="echo compiling; echo oops >&2; exit 2")
    second = await engine.deploy("web", broken)
    record = engine.instance.store.get_deployment("web", second)
    assert record is not None
    assert record.status is DeploymentStatus.FAILED
    assert record.exit_code == 2
    assert record.error == "build exited 2"
    assert "oops" in record.output_tail
    info = await engine.status("web")
    assert info.status is ServiceStatus.RUNNING
    assert info.deployment == first
    assert info.pid == pid
    assert (await http.get(f"http://127.0.0.1:{port}/")).text == f"hello v1 {first}"
    build = await engine.handle.request(ReadLogs("web", tail=10, streams=frozenset({"build"})))
    assert [line.line for line in build.lines] == ["compiling", "oops"] or sorted(
        line.line for line in build.lines
    ) == ["compiling", "oops"]
    system = await engine.handle.request(ReadLogs("web", tail=3, streams=frozenset({"system"})))
    assert "failed: build exited 2 (the previous release is still running)" in system.lines[-1].line


async def test_a_redeploy_switches_to_the_new_release(
    engine: Engine, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    repo = web_repo(tmp_path / "repo")
    port = ports.allocate()
    first = await engine.deploy("web", web_settings(repo, port))
    old_pid = (await engine.status("web")).pid
    commit(repo, {"VERSION": "v2\n"})
    second = await engine.deploy("web", web_settings(repo, port))
    info = await engine.status("web")
    assert info.deployment == second
    assert info.pid != old_pid
    assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == "zombie"
    assert (await http.get(f"http://127.0.0.1:{port}/")).text == f"hello v2 {second}"
    deployments = await engine.handle.request(ListDeployments("web"))
    assert [d.id for d in deployments] == [second, first]


async def test_one_deploy_at_a_time(engine: Engine, tmp_path: Path) -> None:
    repo = web_repo(tmp_path / "repo")
    slow = web_settings(repo, ports.allocate(), build_cmd="sleep 2")
    first = await engine.handle.request(Deploy("web", slow))
    with pytest.raises(Error, match=f"deploy {first.id} of web is already running") as busy:
        await engine.handle.request(Deploy("web", slow))
    assert busy.value.code == "conflict"
    assert isinstance(busy.value.__cause__, DeployInProgress)
    assert await engine.wait_deployment("web", first.id) is DeploymentStatus.SUCCEEDED


async def test_a_settings_change_does_not_restart(engine: Engine, tmp_path: Path) -> None:
    port = ports.allocate()
    await engine.deploy("web", web_settings(web_repo(tmp_path / "repo"), port))
    pid = (await engine.status("web")).pid
    view = await engine.handle.request(
        UpdateSettings("web", SettingsChange(description="the api", run_cmd="false", port=port + 1))
    )
    assert set(view.pending) == {"description", "run_cmd", "port"}
    assert view.active is not None
    assert view.active.port == port
    info = await engine.status("web")
    assert info.pid == pid
    assert info.status is ServiceStatus.RUNNING
    assert info.port == port  # the running release keeps its port until the next deploy


async def test_env_applies_at_restart(
    engine: Engine, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    port = ports.allocate()
    await engine.deploy(
        "web", web_settings(web_repo(tmp_path / "repo"), port), env={"GREETING": "hi"}
    )
    url = f"http://127.0.0.1:{port}/env/GREETING"
    assert (await http.get(url)).text == "hi"
    listing = await engine.handle.request(SetEnv("web", {"GREETING": "hello"}))
    assert listing.applies == "at the next start, restart or deploy"
    assert (await http.get(url)).text == "hi"
    await engine.handle.request(SetEnv("web", {"TOKEN": "s3cret"}, secret=True))
    await engine.handle.request(Restart("web"))
    await engine.wait_status("web", ServiceStatus.RUNNING)
    assert (await http.get(url)).text == "hello"
    assert (await http.get(f"http://127.0.0.1:{port}/env/TOKEN")).text == "s3cret"
    listing = await engine.handle.request(SetEnv("web", {"X": "1"}))
    assert "s3cret" not in repr(listing)


async def test_delete_removes_the_service_and_leaves_the_source_untouched(
    engine: Engine, tmp_path: Path
) -> None:
    repo = web_repo(tmp_path / "repo")
    before = (
        git(repo, "for-each-ref"),
        git(repo, "--no-optional-locks", "status", "--porcelain"),
        sorted((str(p.relative_to(repo)), p.stat().st_mtime_ns) for p in repo.rglob("*")),
    )
    await engine.deploy("web", web_settings(repo, ports.allocate()))
    pids = engine.pids("web")
    assert pids
    await engine.handle.request(Delete("web"))
    with pytest.raises(Error, match="no service named 'web'") as gone:
        await engine.handle.request(GetService("web"))
    assert gone.value.code == "not_found"
    # Only the data folder is kept (a plain delete, not a purge).
    folder = engine.data_dir / "services" / "web"
    assert [p.name for p in folder.iterdir()] == ["data"]
    assert engine.pids("web") == []
    after = (
        git(repo, "for-each-ref"),
        git(repo, "--no-optional-locks", "status", "--porcelain"),
        sorted((str(p.relative_to(repo)), p.stat().st_mtime_ns) for p in repo.rglob("*")),
    )
    assert after == before


@pytest.mark.parametrize(
    "remote",
    [
        "ext::sh -c touch% /tmp/pwned",
        "--upload-pack=touch /tmp/pwned",
        "-oProxyCommand=x",
        "fd::17",
    ],
)
async def test_hostile_git_urls_are_refused_before_git_runs(engine: Engine, remote: str) -> None:
    settings = ServiceSettings(source=Source(remote), run_cmd="true")
    with pytest.raises(Error) as refused:
        await engine.handle.request(Deploy("evil", settings))
    assert refused.value.code == "invalid"
    listed = await engine.handle.request(ListServices())
    assert "evil" not in [info.name for info in listed]
    assert engine.instance.store.get_service("evil") is None


async def test_start_without_a_deployment_is_refused(engine: Engine, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"app.py": ""})
    broken = ServiceSettings(source=Source(str(repo)), run_cmd="true", build_cmd="exit 1")
    await engine.deploy("never", broken)
    assert (await engine.status("never")).status is ServiceStatus.FAILED
    with pytest.raises(Error, match="never has no successful deployment yet") as refused:
        await engine.handle.request(Start("never"))
    assert refused.value.code == "conflict"


async def test_partial_lines_and_invalid_utf8_are_kept(engine: Engine, tmp_path: Path) -> None:
    script = (
        "import os, sys, time\n"
        "os.write(1, b'caf\\xc3\\xa9 ok\\n')\n"
        "os.write(1, b'bad \\xff\\xfe bytes\\n')\n"
        "os.write(2, b'no newline at exit')\n"
        "sys.exit(0)\n"
    )
    repo = make_repo(tmp_path / "repo", {"app.py": script})
    # It exits at once, so its deploy fails; its output is kept all the same.
    await engine.deploy(
        "bytes", ServiceSettings(source=Source(str(repo)), run_cmd=f"{PYTHON} app.py")
    )
    page = await engine.handle.request(ReadLogs("bytes", tail=200))
    lines = [(line.stream, line.line) for line in page.lines]
    assert ("stdout", "café ok") in lines
    assert ("stdout", "bad \ufffd\ufffd bytes") in lines
    assert ("stderr", "no newline at exit") in lines
    cursors = [line.cursor for line in page.lines]
    assert cursors == sorted(cursors)
    assert len(set(cursors)) == len(cursors)


async def test_follow_crosses_the_history_live_seam(engine: Engine, tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "for i in range(1, 100001):\n"
        "    print(f'line {i}')\n"
        "    if i % 1000 == 0:\n"
        "        sys.stdout.flush(); time.sleep(0.001)\n"
        "sys.stdout.flush()\n"
        "time.sleep(1e6)\n"
    )
    repo = make_repo(tmp_path / "repo", {"app.py": script})
    await engine.deploy(
        "chatty",
        ServiceSettings(source=Source(str(repo)), run_cmd=f"{PYTHON} app.py", restart=QUICK_START),
    )
    numbers: list[int] = []
    feed = engine.handle.follow_logs("chatty", after=0, streams=frozenset({"stdout"}))
    with trio.fail_after(30):
        async with contextlib.aclosing(feed):
            async for entry in feed:
                assert not isinstance(entry, Gap), "a follower reading as fast as it can has no gap"
                lines = entry if isinstance(entry, list) else lines_of(entry)
                numbers.extend(int(line.line.split()[1]) for line in lines)
                if numbers and numbers[-1] == 100_000:
                    break
    assert numbers == list(range(1, 100_001))


WORKER = """\
import os, signal, sys, time
me = os.environ["DPLOYR_DEPLOYMENT"]
signal.signal(signal.SIGTERM, lambda *_: (print(f"stopping {me}", flush=True), sys.exit(0)))
print(f"started {me}", flush=True)
time.sleep(1e6)
"""


async def test_a_worker_redeploy_never_runs_two_releases(engine: Engine, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "worker", {"w.py": WORKER})
    settings = ServiceSettings(
        source=Source(str(repo)), run_cmd=f"{PYTHON} w.py", restart=QUICK_START
    )
    await engine.deploy("worker", settings)
    await engine.deploy("worker", settings)
    page = await engine.handle.request(ReadLogs("worker", tail=100))
    lines = [(line.line, line.deployment) for line in page.lines if line.stream == "stdout"]
    # Each line carries the deployment whose process wrote it.
    assert lines == [("started 1", 1), ("stopping 1", 1), ("started 2", 2)]
    assert len(engine.pids("worker")) == 1

    # With rollout overlap, the new release starts before the old one stops.
    overlap = attrs.evolve(settings, rollout=RolloutMode.OVERLAP)
    await engine.deploy("worker", overlap)
    page = await engine.handle.request(ReadLogs("worker", tail=100))
    lines = [line.line for line in page.lines if line.stream == "stdout"]
    assert lines[-2:] == ["started 3", "stopping 2"]


async def test_the_list_cache_key_moves_with_every_change_the_list_shows(
    engine: Engine, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {"worker.py": "import time\ntime.sleep(1e6)\n"})
    settings = ServiceSettings(
        source=Source(str(repo)), run_cmd=f"{PYTHON} worker.py", restart=QUICK_START
    )
    await engine.deploy("worker", settings)
    listed = await engine.handle.request(ListServices())
    generation = engine.handle.generation
    assert engine.handle.generation == generation  # nothing changed: the cached list serves

    # A change no event announces (a description) moves the key too.
    await engine.handle.request(UpdateSettings("worker", SettingsChange(description="jobs")))
    assert engine.handle.generation > generation
    generation = engine.handle.generation
    (info,) = await engine.handle.request(ListServices())
    assert (info.description, listed[0].description) == ("jobs", "")

    # So does a new process of the same status (a crash, restarted): its pid is shown.
    first = info.pid
    assert first is not None
    psutil.Process(first).kill()
    await engine.wait_info(
        "worker", lambda info: info.status is ServiceStatus.RUNNING and info.pid != first
    )
    assert engine.handle.generation > generation


async def test_a_stop_while_a_deploy_waits_for_its_release_records_it_cancelled(
    engine: Engine, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {"worker.py": "import time\ntime.sleep(1e6)\n"})
    patient = RestartPolicy(min_uptime=600)  # the readiness wait outlasts the test
    settings = ServiceSettings(
        source=Source(str(repo)), run_cmd=f"{PYTHON} worker.py", restart=patient
    )
    deployment = await engine.handle.request(Deploy("worker", settings))
    await engine.wait_log("worker", "waiting for it to stay up 600 s")
    info = await engine.handle.request(Stop("worker"))
    assert info.status is ServiceStatus.STOPPED
    record = await engine.deployment("worker", deployment.id)
    assert record.status is DeploymentStatus.FAILED
    assert record.error == "cancelled: the service was stopped or deleted during the deploy"
    assert engine.pids("worker") == []
