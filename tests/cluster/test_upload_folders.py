"""Where an uploaded folder is built, each upload is unpacked into a folder of its own: a
deploy builds exactly the files it uploaded, even with another upload of the service at the
same instant, and a delete of the service removes what was kept for it (and nothing else)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from dployr import archive
from dployr.models import DeploymentStatus, ServiceSettings, Source
from dployr.protocol import messages as m
from dployr.upload_folders import UploadFolders
from tests.agent.conftest import AgentProcess, agent
from tests.cli.conftest import WAIT, Daemon, Result, free_port, run_cli
from tests.cluster.test_upload import uploads_left, web_folder
from tests.engine.conftest import (
    QUICK_START,
    Engine,
    engine,  # noqa: F401 (a fixture)
)
from tests.helpers import PYTHON


def unpacked(data_dir: Path, service: str) -> list[str]:
    """The folders kept for ``service``'s uploads (hidden ones too)."""
    where = data_dir / "uploads" / "unpacked" / service
    return sorted(os.listdir(where)) if where.exists() else []


async def answer(port: int) -> str:
    async with httpx.AsyncClient(timeout=WAIT) as http:
        return (await http.get(f"http://127.0.0.1:{port}/")).text


async def source_of(plane: Daemon, service: str) -> Path:
    settings = json.loads(await plane.ok("settings", service, "--json"))
    return Path(settings["settings"]["source"]["remote"])


async def joined_agent(plane: Daemon, name: str, data_dir: Path) -> AgentProcess:
    added = await plane.cli("instances", "add", name)
    assert added.code == 0, added
    process = await AgentProcess.start(data_dir, "--join", plane.url, "--token", added.out.strip())
    await process.wait_for("connected to the control plane")
    return process


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[Daemon, AgentProcess]]:
    """A control plane and the agent of its instance ``east`` (data dir ``tmp_path/east``)."""
    plane = await Daemon.start(tmp_path / "plane")
    try:
        east = await joined_agent(plane, "east", tmp_path / "east")
        try:
            yield plane, east
        finally:
            assert await east.stop() == 0
    finally:
        code, _ = await plane.stop()
        assert code == 0


@pytest.mark.slow
async def test_deleting_a_service_removes_its_uploaded_folders_on_the_agent(
    cluster: tuple[Daemon, AgentProcess], tmp_path: Path
) -> None:
    plane, east = cluster
    east_dir = tmp_path / "east"
    ports = {"api": free_port(), "web": free_port()}

    async def deploy(service: str, version: str) -> None:
        folder = web_folder(tmp_path / f"{service}-{version}", version)
        await plane.ok(
            "deploy", "--name", service, "--remote", ".", "--run-cmd",
            f"{PYTHON} app.py", "--port", str(ports[service]), "--min-uptime", "0.3",
            "--instance", "east", cwd=folder,
        )  # fmt: skip
        assert (await answer(ports[service])).startswith(f"hello {version}")

    await deploy("api", "v1")
    await deploy("web", "v1")
    await deploy("api", "v2")
    api_source, web_source = await source_of(plane, "api"), await source_of(plane, "web")
    assert (api_source / "app.py").is_file()
    assert (web_source / "app.py").is_file()

    deleted = await plane.cli("delete", "api", "--yes")
    assert deleted.code == 0, deleted
    assert not api_source.exists()
    assert unpacked(east_dir, "api") == []
    assert not (east_dir / "uploads" / "unpacked" / "api").exists()
    # Nothing of another service's: web keeps its folder and still answers.
    assert (web_source / "app.py").is_file()
    assert unpacked(east_dir, "web") == [web_source.name]
    assert (await answer(ports["web"])).startswith("hello v1")
    assert uploads_left(east_dir) == []

    # The same name deployed again after the delete works, twice: the running
    # release's source is kept (a redeploy with no new source builds it again),
    # the one before it at most, nothing half-unpacked.
    await deploy("api", "v3")
    await deploy("api", "v4")
    api_source = await source_of(plane, "api")
    assert api_source.parent == east_dir / "uploads" / "unpacked" / "api"
    assert api_source.name in unpacked(east_dir, "api")
    assert len(unpacked(east_dir, "api")) == 2
    assert not [name for name in unpacked(east_dir, "api") if name.startswith(".")]
    assert await east.stop() == 0

    # An agent that stopped while unpacking, or while receiving an upload that never
    # resumed, finds what was left and removes it when it starts again; the folders
    # of its services stay.
    kept = unpacked(east_dir, "api")
    half = east_dir / "uploads" / "unpacked" / "api" / f".{'ab' * 16}.unpacking"
    (half / "sub").mkdir(parents=True)
    (half / "sub" / "app.py").write_text("half\n")
    incoming = east_dir / "uploads" / "incoming"
    stale = incoming / f".{'cd' * 16}.partial"
    stale.write_bytes(b"x" * 1000)
    long_ago = time.time() - 2 * 3600
    os.utime(stale, (long_ago, long_ago))
    async with agent(east_dir) as again:
        await again.wait_for("connected to the control plane")
        assert unpacked(east_dir, "api") == kept
        assert uploads_left(east_dir) == []


@pytest.mark.slow
async def test_deleting_a_service_uploaded_to_the_control_plane_removes_its_folder(
    tmp_path: Path,
) -> None:
    plane = await Daemon.start(tmp_path / "plane")
    try:
        port = free_port()
        command = (
            "--server", plane.url, "--token", plane.token, "deploy", "--name", "web",
            "--remote", str(web_folder(tmp_path / "app", "v1")), "--run-cmd",
            f"{PYTHON} app.py", "--port", str(port), "--min-uptime", "0.3",
        )  # fmt: skip
        # --server: the folder is uploaded; the control plane's own instance builds it.
        for _ in range(2):
            deployed = await run_cli(*command, env=plane.env)
            assert deployed.code == 0, deployed
        source = await source_of(plane, "web")
        assert (source / "app.py").is_file()

        deleted = await plane.cli("delete", "web", "--yes")
        assert deleted.code == 0, deleted
        assert not source.exists()
        assert not (plane.data_dir / "uploads" / "unpacked" / "web").exists()
        assert uploads_left(plane.data_dir) == []
    finally:
        code, _ = await plane.stop()
        assert code == 0


@pytest.mark.slow
@pytest.mark.parametrize("instance", ["east", "local"])
async def test_two_uploads_of_one_service_at_once_never_mix(
    cluster: tuple[Daemon, AgentProcess], tmp_path: Path, instance: str
) -> None:
    plane, _ = cluster
    # On the agent, or on the control plane's own instance (--server: uploaded too).
    builder = tmp_path / "east" if instance == "east" else plane.data_dir
    server = ("--server", plane.url, "--token", plane.token)
    # The deploy that is taken holds in its build until the test opens the gate:
    # the other is carried out meanwhile.
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    port = free_port()
    folders = {}
    for version in ("va", "vb"):
        folder = folders[version] = web_folder(tmp_path / version, version)
        (folder / "bulk").mkdir()
        for index in range(300):
            (folder / "bulk" / f"{index}.txt").write_text(f"{version} {index}\n")
    results: dict[str, Result] = {}
    one_ended = trio.Event()

    async def deploy(version: str) -> None:
        results[version] = await plane.cli(
            *server, "deploy", "--name", "api", "--remote", ".", "--run-cmd",
            f"{PYTHON} app.py", "--build-cmd", f"cat {gate}", "--port", str(port),
            "--min-uptime", "0.3", "--instance", instance, cwd=folders[version],
        )  # fmt: skip
        one_ended.set()

    def open_the_gate() -> None:
        with gate.open("w") as writer:  # returns once the build reads it
            writer.write("go\n")

    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(deploy, "va")
            nursery.start_soon(deploy, "vb")
            await one_ended.wait()
            await trio.to_thread.run_sync(open_the_gate, abandon_on_cancel=True)

    # One is refused in one line, as any deploy of a service already deploying.
    refused = [v for v, result in results.items() if result.code != 0]
    assert len(refused) == 1, results
    (loser,) = refused
    (winner,) = {"va", "vb"} - {loser}
    line = results[loser].one_line_error()
    assert "of api is already running" in line, line
    assert "wait for it to finish" in line, line
    assert results[winner].out.startswith("uploading "), results[winner]
    assert "api is running" in results[winner].out, results[winner]

    # The other runs exactly the files it uploaded, no file of the refused one.
    assert (await answer(port)).startswith(f"hello {winner}")
    history = json.loads(await plane.ok("deployments", "api", "--json"))
    assert [d["status"] for d in history] == ["succeeded"]
    release = builder / "services" / "api" / "releases" / str(history[0]["id"])
    bulk = sorted((release / "bulk").iterdir())
    assert len(bulk) == 300
    assert {p.read_text().split()[0] for p in bulk} == {winner}
    assert (release / "VERSION").read_text() == f"{winner}\n"
    # Nothing of the refused upload is kept.
    assert unpacked(builder, "api") == [(await source_of(plane, "api")).name]
    assert uploads_left(builder) == []


def _worker(source: str) -> ServiceSettings:
    return ServiceSettings(
        source=Source(source),
        run_cmd=f"{PYTHON} worker.py",
        restart=QUICK_START,
        stop_grace=5.0,
    )


def _upload(tmp_path: Path, version: str) -> tuple[str, Path]:
    """A folder packed as the CLI packs it: its upload id and archive."""
    folder = tmp_path / f"app-{version}"
    folder.mkdir()
    (folder / "worker.py").write_text(f"import signal\nprint({version!r})\nsignal.pause()\n")
    upload = archive.new_upload_id()
    path = tmp_path / f"{upload}.tar.gz"
    with path.open("xb") as file:
        archive.pack(folder, file)
    return upload, path


async def test_the_folder_an_earlier_dployr_kept_goes_as_the_others_do(
    engine: Engine,  # noqa: F811
    tmp_path: Path,
) -> None:
    # As dployr before kept an upload: one folder per service, its source; and what an
    # unpack it did not finish left beside it.
    uploads = engine.data_dir / "uploads"
    legacy = uploads / "folders" / "api"
    legacy.mkdir(parents=True)
    (legacy / "worker.py").write_text("import signal\nsignal.pause()\n")
    (uploads / "folders" / ".api.new.unpacking" / "half").mkdir(parents=True)
    await engine.deploy("api", _worker(str(legacy)))
    folders = UploadFolders(uploads)
    assert sorted(os.listdir(uploads / "folders")) == ["api"]

    async def deploy(version: str) -> Path:
        upload, path = _upload(tmp_path, version)
        request = m.Deploy("api", _worker(archive.UPLOAD_PREFIX + upload))
        deployment = await folders.carry_out(request, engine.handle, {upload: path}.__getitem__)
        assert not path.exists()  # the archive, used
        status = await engine.wait_deployment("api", deployment.id)
        assert status is DeploymentStatus.SUCCEEDED
        return uploads / "unpacked" / "api" / upload

    # Kept while the service's settings name it (until a new upload succeeded)...
    v2 = await deploy("v2")
    assert legacy.is_dir()
    assert (v2 / "worker.py").is_file()
    # ... then removed as the other folders are.
    v3 = await deploy("v3")
    assert not legacy.exists()
    assert sorted(os.listdir(v3.parent)) == sorted([v2.name, v3.name])

    deleted = await folders.carry_out(m.Delete("api"), engine.handle, {}.__getitem__)
    assert deleted == m.Deleted("api")
    assert not (uploads / "unpacked" / "api").exists()
