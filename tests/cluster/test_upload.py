"""A local folder reaches the instance that builds it: ``dployr deploy --remote .`` packs it,
uploads it to the control plane (with progress, within a size limit), and the control plane
passes it to the agent that runs the service, which unpacks it safely and builds it."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.agent.conftest import agent
from tests.cli.conftest import WAIT, Daemon, free_port, run_cli
from tests.helpers import PYTHON, WEB_APP

pytestmark = pytest.mark.slow


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[Daemon]:
    """A control plane taking uploads of at most 256 KiB."""
    daemon = await Daemon.start(tmp_path / "plane", "--max-upload", "256K")
    try:
        yield daemon
    finally:
        code, _ = await daemon.stop()
        assert code == 0


def web_folder(path: Path, version: str) -> Path:
    """The test web app as a plain folder (no repository), with a ``.git`` of junk inside
    a subfolder, which is never uploaded."""
    (path / "static" / ".git").mkdir(parents=True, exist_ok=True)
    (path / "app.py").write_text(WEB_APP)
    (path / "VERSION").write_text(version + "\n")
    (path / "static" / "index.html").write_text("<p>hi</p>\n")
    (path / "static" / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (path / "current").symlink_to("static")
    return path


def uploads_left(data_dir: Path) -> list[str]:
    """The uploads a control plane or an agent still keeps (whole or partial)."""
    incoming = data_dir / "uploads" / "incoming"
    return sorted(os.listdir(incoming)) if incoming.exists() else []


async def test_a_local_folder_is_uploaded_to_the_agent_that_builds_it(
    plane: Daemon, tmp_path: Path
) -> None:
    added = await plane.cli("instances", "add", "east")
    assert added.code == 0, added
    token = added.out.strip()
    async with agent(tmp_path / "east", "--join", plane.url, "--token", token) as joined:
        await joined.wait_for("connected to the control plane")
        folder = web_folder(tmp_path / "app", "v1")
        port = free_port()
        command = (
            "deploy", "--name", "api", "--remote", ".", "--run-cmd", f"{PYTHON} app.py",
            "--port", str(port), "--min-uptime", "0.3", "--instance", "east",
        )  # fmt: skip
        deployed = await plane.ok(*command, cwd=folder)

        # The progress shows, then the deploy's steps; it runs on the agent and answers.
        lines = deployed.splitlines()
        assert lines[0].startswith(f"uploading {folder} (5 entries, "), deployed
        assert lines[1].startswith("  sent "), deployed
        sent = [line for line in lines if line.startswith("  sent ")]
        assert sent[-1].endswith("(100%)"), deployed
        assert [line for line in lines if line.startswith("uploaded ")], deployed
        assert "api is running" in lines[-1], deployed
        async with httpx.AsyncClient(timeout=WAIT) as http:
            assert (await http.get(f"http://127.0.0.1:{port}/")).text.startswith("hello v1")
        (row,) = json.loads(await plane.ok("list", "--json"))
        assert (row["name"], row["instance"], row["status"]) == ("api", "east", "running")

        # Built from the folder as the agent unpacked it: no .git, the symlink kept; the
        # archives are gone on both sides once used.
        (unpacked,) = (tmp_path / "east" / "uploads" / "unpacked" / "api").iterdir()
        assert (unpacked / "static" / "index.html").read_text() == "<p>hi</p>\n"
        assert not (unpacked / "static" / ".git").exists()
        assert os.readlink(unpacked / "current") == "static"
        assert uploads_left(plane.data_dir) == []
        assert uploads_left(tmp_path / "east") == []

        # An uploaded folder has no branch to choose: refused before anything is sent.
        branched = await plane.cli(*command, "--branch", "main", cwd=folder)
        assert "is uploaded as a folder: it has no branch or commit" in branched.one_line_error()

        # The same command, after an edit, deploys the new content.
        (folder / "VERSION").write_text("v2\n")
        await plane.ok(*command, cwd=folder)
        async with httpx.AsyncClient(timeout=WAIT) as http:
            assert (await http.get(f"http://127.0.0.1:{port}/")).text.startswith("hello v2")

        # A blueprint in the folder (remote "." and instance "east") does the same.
        (folder / "VERSION").write_text("v3\n")
        (folder / "dployr.toml").write_text(
            f'name = "api"\nremote = "."\nrun_cmd = "{PYTHON} app.py"\nport = {port}\n'
            'instance = "east"\n[restart]\nmin_uptime = 0.3\n'
        )
        assert "uploading " in await plane.ok("deploy", cwd=folder)
        async with httpx.AsyncClient(timeout=WAIT) as http:
            assert (await http.get(f"http://127.0.0.1:{port}/")).text.startswith("hello v3")
        history = json.loads(await plane.ok("deployments", "api", "--json"))
        assert [d["status"] for d in history] == ["succeeded"] * 3
    assert joined.returncode == 0


async def test_a_new_service_goes_to_an_agent_uploaded_when_the_control_plane_runs_none(
    tmp_path: Path,
) -> None:
    plane = await Daemon.start(tmp_path / "plane", "--no-local-services")
    try:
        added = await plane.cli("instances", "add", "east")
        token = added.out.strip()
        async with agent(tmp_path / "east", "--join", plane.url, "--token", token) as joined:
            await joined.wait_for("connected to the control plane")
            folder = web_folder(tmp_path / "app", "v1")
            port = free_port()
            deployed = await plane.ok(
                "deploy", "--name", "api", "--remote", ".", "--run-cmd", f"{PYTHON} app.py",
                "--port", str(port), "--min-uptime", "0.3", cwd=folder,
            )  # fmt: skip
            assert deployed.startswith(f"uploading {folder} ("), deployed
            (row,) = json.loads(await plane.ok("list", "--json"))
            assert (row["name"], row["instance"], row["status"]) == ("api", "east", "running")
            async with httpx.AsyncClient(timeout=WAIT) as http:
                assert (await http.get(f"http://127.0.0.1:{port}/")).text.startswith("hello v1")
        assert joined.returncode == 0
    finally:
        code, _ = await plane.stop()
        assert code == 0


async def test_a_folder_for_a_daemon_elsewhere_is_uploaded_and_one_too_large_refused(
    plane: Daemon, tmp_path: Path
) -> None:
    folder = web_folder(tmp_path / "app", "v1")
    port = free_port()
    server = ("--server", plane.url, "--token", plane.token)
    command = (
        *server, "deploy", "--name", "web", "--remote", str(folder), "--run-cmd",
        f"{PYTHON} app.py", "--port", str(port), "--min-uptime", "0.3",
    )  # fmt: skip
    # --server: the daemon is taken to be on another machine, so the folder is uploaded;
    # the control plane's own instance unpacks it as an agent would.
    deployed = await run_cli(*command, env=plane.env)
    assert deployed.code == 0, deployed
    assert deployed.out.startswith(f"uploading {folder} ("), deployed.out
    async with httpx.AsyncClient(timeout=WAIT) as http:
        assert (await http.get(f"http://127.0.0.1:{port}/")).text.startswith("hello v1")
    settings = json.loads(await plane.ok("settings", "web", "--json"))
    source = Path(settings["settings"]["source"]["remote"])
    assert source.parent == plane.data_dir / "uploads" / "unpacked" / "web"
    assert (source / "app.py").read_text() == WEB_APP
    assert uploads_left(plane.data_dir) == []

    # Past the limit (256 KiB packed): one line, nothing deployed, nothing kept.
    (folder / "noise.bin").write_bytes(os.urandom(300 * 1024))
    refused = await run_cli(*command, env=plane.env)
    line = refused.one_line_error()
    assert f"the folder {folder} is too large to upload" in line, line
    assert "limit of 256 KiB (dployr up --max-upload)" in line, line
    history = json.loads(await plane.ok("deployments", "web", "--json"))
    assert len(history) == 1
    assert uploads_left(plane.data_dir) == []

    # What a folder deploy refuses, an upload refuses too (one rule), before sending.
    (folder / "noise.bin").unlink()
    os.mkfifo(folder / "pipe")
    refused = await run_cli(*command, env=plane.env)
    line = refused.one_line_error()
    assert f"{folder / 'pipe'} is not a file, folder or symlink" in line, line
    assert len(json.loads(await plane.ok("deployments", "web", "--json"))) == 1


def _archive(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for member, data in members:
            member.size = len(data) if member.isreg() else 0
            tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return out.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = link
    return member


def _hostile() -> Iterator[tuple[bytes, str]]:
    fine = (_member("app.py"), b"print('hi')\n")
    yield _archive(fine, (_member("../evil.py"), b"x")), "a path out of its folder: '../evil.py'"
    yield _archive(fine, (_member("/tmp/evil.py"), b"x")), "an absolute path: '/tmp/evil.py'"
    yield (
        _archive(fine, (_member("a/b", tarfile.SYMTYPE, "../../outside"), b"")),
        "a symlink out of its folder: 'a/b' -> '../../outside'",
    )
    yield (
        _archive(fine, (_member("link", tarfile.SYMTYPE, "/etc"), b"")),
        "a symlink out of its folder: 'link' -> '/etc'",
    )
    yield (
        _archive(fine, (_member("tty", tarfile.CHRTYPE), b"")),
        "holds 'tty', which is not a file, folder or symlink",
    )
    yield b"not an archive at all", "the upload is not a .tar.gz archive"


async def test_hostile_or_oversized_uploads_are_refused_and_nothing_kept(
    plane: Daemon, tmp_path: Path
) -> None:
    async with plane.http() as http:
        for body, message in _hostile():
            answer = await http.post("/uploads", content=body)
            assert answer.status_code == 400, answer.text
            assert message in answer.json()["error"]["message"], answer.text
            assert "\n" not in answer.json()["error"]["message"]
        assert uploads_left(plane.data_dir) == []

        # Oversized while streaming, its length not given up front (chunked): 413.
        async def stream() -> AsyncIterator[bytes]:
            for _ in range(40):
                yield os.urandom(16 * 1024)

        answer = await http.post("/uploads", content=stream())
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"] == {
            "code": "too_large",
            "message": "the upload is larger than this control plane's limit of 256 KiB "
            "(dployr up --max-upload)",
        }
        assert uploads_left(plane.data_dir) == []

        # A deploy naming an upload there is not: one line, nothing recorded.
        body = {"remote": {"url": "upload:" + "ab" * 16}, "run_cmd": "true"}
        missing = await http.post("/services/ghost/deploy", json=body)
        assert missing.status_code == 404, missing.text
        assert "no upload abababab" in missing.json()["error"]["message"]
        assert (await http.get("/services")).json() == []

        # A read-only token cannot upload.
        made = await http.post("/tokens", json={"name": "reader", "scope": "read"})
        reader = made.json()["token"]
    async with plane.http(reader) as http:
        answer = await http.post("/uploads", content=_archive((_member("a"), b"a")))
        assert answer.status_code == 403, answer.text
    assert not (tmp_path / "evil.py").exists()
    assert uploads_left(plane.data_dir) == []
