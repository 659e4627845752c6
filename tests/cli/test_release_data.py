"""Release folders and a service's data folder, as a user meets them: real CLI, real daemon."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import WAIT, Daemon, free_port, http_get
from tests.helpers import PYTHON, commit, make_repo

pytestmark = pytest.mark.slow

NOTEBOOK = """\
\"\"\"Keeps a file in $DPLOYR_DATA_DIR, as flaskr keeps its SQLite database.\"\"\"
import http.server
import os

DATA = os.environ["DPLOYR_DATA_DIR"]
with open(os.path.join(DATA, "starts.txt"), "a") as notes:
    notes.write(open("VERSION").read())


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(os.path.join(DATA, "starts.txt")) as notes:
            body = notes.read().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


async def test_a_release_never_serves_the_repository(daemon: Daemon, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "site", {"index.html": "<h1>hi</h1>\n"})
    port = free_port()
    await daemon.ok(
        "deploy", "--min-uptime", "300ms", "--name", "site", "--remote", str(repo),
        "--run-cmd", f"{PYTHON} -m http.server $PORT --bind 127.0.0.1", "--port", str(port),
    )  # fmt: skip
    assert await http_get(port, "/index.html") == "<h1>hi</h1>\n"
    async with httpx.AsyncClient(timeout=WAIT) as client:
        response = await client.get(f"http://127.0.0.1:{port}/.git/config")
    assert response.status_code == 404
    release = daemon.data_dir / "services" / "site" / "releases" / "1"
    assert (release / "index.html").is_file()
    assert not (release / ".git").exists()


async def test_data_folder_survives_deploys_rollbacks_and_a_plain_delete(
    daemon: Daemon, tmp_path: Path
) -> None:
    repo = make_repo(
        tmp_path / "notes",
        {
            "app.py": NOTEBOOK,
            "VERSION": "v1\n",
            "build.sh": 'echo "$(cat VERSION)" >> "$DPLOYR_DATA_DIR/builds.txt"\n',
        },
    )
    port = free_port()
    command = (
        "deploy", "--name", "notes", "--remote", str(repo), "--build-cmd", "sh build.sh",
        "--min-uptime", "300ms", "--run-cmd", f"{PYTHON} app.py", "--port", str(port),
    )  # fmt: skip
    data = daemon.data_dir / "services" / "notes" / "data"

    await daemon.ok(*command)
    assert await http_get(port) == "v1\n"
    commit(repo, {"VERSION": "v2\n"})
    await daemon.ok(*command)
    assert await http_get(port) == "v1\nv2\n"  # the file the first release wrote is kept
    assert (data / "builds.txt").read_text() == "v1\nv2\n"  # builds see it too
    await daemon.ok("rollback", "notes")
    assert await http_get(port) == "v1\nv2\nv1\n"
    await daemon.ok("service", "restart", "notes")
    assert await http_get(port) == "v1\nv2\nv1\nv1\n"

    shown = await daemon.ok("settings", "notes")
    assert f"data-dir     {data}" in shown
    view = json.loads(await daemon.ok("settings", "notes", "--json"))
    assert view["data_dir"] == str(data)
    refused = await daemon.cli("env", "set", "notes", "DPLOYR_DATA_DIR=/tmp")
    assert "DPLOYR_DATA_DIR is set by dployr" in refused.one_line_error()

    # A plain delete keeps the data; the service created again finds it.
    await daemon.ok("delete", "notes", "--yes")
    assert not (data.parent / "releases").exists()
    assert (data / "starts.txt").read_text() == "v1\nv2\nv1\nv1\n"
    await daemon.ok(*command)
    assert await http_get(port) == "v1\nv2\nv1\nv1\nv2\n"

    # --purge removes it with the rest.
    assert await daemon.ok("delete", "notes", "--yes", "--purge") == "deleted notes\n"
    assert not data.parent.exists()


async def test_api_delete_keeps_the_data_unless_purge(daemon: Daemon, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "worker", {"worker.py": "import signal\nsignal.pause()\n"})
    command = (
        "deploy",
        "--min-uptime",
        "300ms",
        "--name",
        "w",
        "--remote",
        str(repo),
        "--run-cmd",
        f"{PYTHON} worker.py",
    )
    folder = daemon.data_dir / "services" / "w"
    await daemon.ok(*command)
    (folder / "data" / "kept.txt").write_text("x")
    async with daemon.http() as http:
        assert (await http.delete("/services/w")).json() == {"name": "w"}
        assert (folder / "data" / "kept.txt").read_text() == "x"
        assert sorted(p.name for p in folder.iterdir()) == ["data"]
        await daemon.ok(*command)
        assert (await http.delete("/services/w?purge=true")).status_code == 200
        assert not folder.exists()
        bad = await http.delete("/services/nope?purge=maybe")
    assert bad.status_code == 400
