"""Static sites (issue 15, points 1-4), as a user deploys them: a real daemon, the real CLI,
real Caddy (Debian's package) serving the release, real HTTP clients."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import httpx
import psutil
import pytest
import trio
from trio_websocket import open_websocket_url

from tests.cli.conftest import WAIT, Daemon, finish, free_port, start_up
from tests.helpers import Daemon as HelperDaemon

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "site"


def fingerprint(version: str) -> str:
    return hashlib.sha256(version.encode()).hexdigest()[:8]


def index(version: str) -> str:
    return (
        f"<!doctype html><title>{version}</title>"
        f'<script src="/assets/app-{fingerprint(version)}.js"></script>\n'
    )


def asset(version: str) -> str:
    return f"console.log({version!r});\n" + "//" + "x" * 4000 + "\n"


def write_site(folder: Path, version: str) -> Path:
    """A built site in ``folder/dist``: an index naming its version and a fingerprinted
    asset of that version, a version file, a 404 page and a dotfile."""
    dist = folder / "dist"
    if dist.exists():
        for path in sorted(dist.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
    (dist / "assets").mkdir(parents=True, exist_ok=True)
    (dist / "index.html").write_text(index(version))
    (dist / "version.txt").write_text(version)
    (dist / "assets" / f"app-{fingerprint(version)}.js").write_text(asset(version))
    (dist / "404.html").write_text("<h1>no such page</h1>\n")
    (dist / ".env").write_text("SECRET=hunter2\n")
    (folder / "README.md").write_text("the source of the site, not served\n")
    return folder


async def deploy_site(daemon: Daemon, folder: Path, port: int, *extra: str) -> str:
    return await daemon.ok(
        "deploy", "--name", "site", "--type", "static", "--remote", str(folder),
        "--port", str(port), "--min-uptime", "0.3", *extra,
    )  # fmt: skip


async def get(port: int, path: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=WAIT) as client:
        return await client.get(f"http://127.0.0.1:{port}{path}", headers=headers)


async def test_a_static_site_is_served_by_caddy_with_its_rules(
    daemon: Daemon, tmp_path: Path
) -> None:
    folder = write_site(tmp_path / "site", "v1")
    dist = folder / "dist"
    (dist / "big.txt").write_text("plain " * 2000)
    (dist / "big.txt.gz").write_bytes(gzip.compress(b"precompressed"))
    (dist / "_redirects").write_text("# moved\n/old/* /new/:splat 302\n/pretty /index.html 200\n")
    (dist / "_headers").write_text("/assets/*\n  X-Asset: yes\n")
    port = free_port()
    # A build that leaves a repository in the published folder, as a careless copy would.
    out = await deploy_site(
        daemon,
        folder,
        port,
        "--build-cmd",
        "mkdir -p dist/.git && echo '[core]' > dist/.git/config",
    )
    publishing = "==> publishing dist/ (the first of dist, build, public): 404.html, "
    assert publishing + "2 redirect rules, 1 header rule\n" in out
    assert f"site is running on port {port}" in out

    home = await get(port, "/")
    assert (home.status_code, home.text) == (200, index("v1"))
    assert home.headers["cache-control"] == "no-cache"
    script = await get(port, f"/assets/app-{fingerprint('v1')}.js")
    assert script.text == asset("v1")
    assert script.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert script.headers["x-asset"] == "yes"
    version = await get(port, "/version.txt")
    assert version.text == "v1"
    assert "cache-control" not in version.headers
    for hidden in ("/.env", "/.git/config", "/%2egit/config", "/assets/../.env", "/_redirects"):
        answer = await get(port, hidden)
        assert (answer.status_code, answer.text) == (404, "<h1>no such page</h1>\n"), hidden
    missing = await get(port, "/no/such/page")
    assert (missing.status_code, missing.text) == (404, "<h1>no such page</h1>\n")
    moved = await get(port, "/old/a/b")
    assert (moved.status_code, moved.headers["location"]) == (302, "/new/a/b")
    assert (await get(port, "/pretty")).text == index("v1")
    compressed = await get(port, "/big.txt", **{"Accept-Encoding": "gzip"})
    assert compressed.headers["content-encoding"] == "gzip"
    assert compressed.text == "precompressed"  # the .gz beside it, not compressed on the fly
    assert (await get(port, "/big.txt", **{"Accept-Encoding": "identity"})).text.startswith("plain")

    # Caddy keeps its files in the service's data dir, and saves no configuration there.
    caddy_home = daemon.data_dir / "services" / "site" / "data" / ".caddy"
    assert caddy_home.is_dir()
    assert not (caddy_home / "config" / "caddy" / "autosave.json").exists()
    # Caddy's access log is the service's output, in its log history.
    logs = await daemon.ok("logs", "site", "--tail", "200")
    assert '"uri":"/.env"' in logs
    assert '"status":404' in logs
    # The settings say what it is, and what it publishes.
    settings = await daemon.ok("settings", "site")
    assert "type         static" in settings
    assert "static       publish-dir dist, build or public (the first there)" in settings


async def test_a_single_page_app_and_the_blueprint_rules(daemon: Daemon, tmp_path: Path) -> None:
    folder = write_site(tmp_path / "app", "v1")
    port = free_port()
    (folder / "dployr.toml").write_text(
        f'name = "spa"\ntype = "static"\nremote = "."\nport = {port}\n'
        "[restart]\nmin_uptime = 0.3\n"
        '[static]\npublish_dir = "dist"\nspa = true\n'
        '[[static.redirects]]\npath = "/docs"\nto = "https://docs.example.org/"\n'
        '[[static.headers]]\npath = "/*"\nvalues = { X-Frame-Options = "DENY" }\n'
    )
    out = await daemon.ok("deploy", cwd=folder)
    publishing = "==> publishing dist/ (publish-dir): single-page app, 404.html, "
    assert publishing + "1 redirect rule, 1 header rule\n" in out
    shown = await daemon.ok("settings", "spa")
    assert "static       publish-dir dist; single-page app; 1 redirect rule; 1 header rule" in shown
    route = await get(port, "/users/42")
    assert (route.status_code, route.text) == (200, index("v1"))
    assert route.headers["cache-control"] == "no-cache"
    assert route.headers["x-frame-options"] == "DENY"
    docs = await get(port, "/docs")
    assert (docs.status_code, docs.headers["location"]) == (301, "https://docs.example.org/")
    assert (await get(port, "/.env")).status_code == 404


async def test_a_site_without_a_build_folder_publishes_its_root(
    daemon: Daemon, tmp_path: Path
) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "index.html").write_text("<p>hello</p>\n")
    (folder / ".htpasswd").write_text("admin:secret\n")
    port = free_port()
    out = await deploy_site(daemon, folder, port)
    assert "==> publishing ./ (none of dist, build, public exists)" in out
    assert (await get(port, "/")).text == "<p>hello</p>\n"
    hidden = await get(port, "/.htpasswd")
    assert (hidden.status_code, hidden.text) == (404, "404 Not Found\n")
    dployr_files = await get(port, "/.dployr/caddy.json")
    assert dployr_files.status_code == 404


async def test_bad_static_settings_are_one_line_errors(daemon: Daemon, tmp_path: Path) -> None:
    folder = write_site(tmp_path / "site", "v1")
    port = free_port()
    no_dir = await daemon.cli(
        "deploy", "--name", "site", "--type", "static", "--remote", str(folder),
        "--port", str(port), "--publish-dir", "out",
    )  # fmt: skip
    assert no_dir.one_line_error() == (
        "error: deploy 1 of site failed: cannot publish the site: publish-dir 'out' is not a "
        "folder of the release"
    )
    (folder / "dist" / "_redirects").write_text("/a /b 302\n/c\n")
    bad_rule = await daemon.cli(
        "deploy", "--name", "site", "--type", "static", "--remote", str(folder),
        "--port", str(port), "--publish-dir", "dist",
    )  # fmt: skip
    assert "_redirects line 2: a rule is FROM TO [STATUS]" in bad_rule.one_line_error()
    outside = await daemon.cli(
        "deploy", "--name", "site", "--type", "static", "--remote", str(folder),
        "--port", str(port), "--publish-dir", "../x",
    )  # fmt: skip
    assert "publish-dir '../x' must be a folder inside the release" in outside.one_line_error()
    run_cmd = await daemon.cli(
        "deploy", "--name", "site", "--type", "static", "--remote", str(folder),
        "--port", str(port), "--run-cmd", "python3 -m http.server",
    )  # fmt: skip
    assert "a static site has no run-cmd" in run_cmd.one_line_error()


async def test_without_caddy_a_static_deploy_names_the_package(tmp_path: Path) -> None:
    folder = write_site(tmp_path / "site", "v1")
    tools = tmp_path / "bin"  # a PATH with git and a shell, and no caddy
    tools.mkdir()
    for program in ("git", "sh", "env"):
        (tools / program).symlink_to(f"/usr/bin/{program}")
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPLOYR_")}
    env.update(PATH=str(tools), DPLOYR_HOME=str(data))
    process, lines = await start_up(data, env=env)
    try:
        daemon = Daemon(data, process, lines[0].split(" is up: ", 1)[1].split()[0], lines)
        daemon.env = env
        port = free_port()
        result = await daemon.cli(
            "deploy", "--name", "site", "--type", "static", "--remote", str(folder),
            "--port", str(port),
        )  # fmt: skip
        assert result.one_line_error() == (
            "error: deploy 1 of site failed: a static site is served by Caddy, which is not "
            "installed on this machine: install Debian's package caddy (apt-get install caddy)"
        )
    finally:
        with trio.CancelScope(shield=True):
            process.terminate()
            code, _ = await finish(process)
    assert code == 0


async def test_caddy_shows_in_the_service_metrics(daemon: Daemon, tmp_path: Path) -> None:
    folder = write_site(tmp_path / "site", "v1")
    await deploy_site(daemon, folder, free_port())
    url = daemon.url.replace("http://", "ws://")
    stream = f"{url}/api/v1/services/site/metrics/stream?token={daemon.token}"
    with trio.fail_after(WAIT):
        async with open_websocket_url(stream) as ws:
            while True:
                message = json.loads(await ws.get_message())
                if message.get("type") != "metrics":
                    continue
                if message["memory_rss_bytes"] > 5_000_000 and message["threads"] > 1:
                    break  # a Go server's memory and threads, not a shell's


async def test_a_redeploy_and_a_rollback_under_requests_are_atomic(
    daemon: Daemon, tmp_path: Path
) -> None:
    """Visitors each load the page, its script and the version file on one connection
    while the site is redeployed and rolled back: no error, never a mix of versions."""
    folder = write_site(tmp_path / "site", "v1")
    (folder / "dist").rename(folder / "src")
    # A build that takes its time between the page and its script: if anything served
    # the release folder while it is built, a visitor would get a page without its script.
    build = (
        "rm -rf dist && mkdir dist && cp src/index.html dist/ && sleep 0.2 && "
        'cp -r src/assets src/version.txt src/404.html dist/ && echo b >> "$DPLOYR_DATA_DIR/builds"'
    )
    port = free_port()
    await deploy_site(daemon, folder, port, "--build-cmd", build)

    errors: list[str] = []
    visits: list[str] = []
    seen = {"v1": trio.Event(), "v2": trio.Event()}
    stopping = trio.Event()

    async def visitor() -> None:
        base = f"http://127.0.0.1:{port}"
        while not stopping.is_set() and len(visits) < 20_000:
            limits = httpx.Limits(max_connections=1)
            async with httpx.AsyncClient(base_url=base, timeout=WAIT, limits=limits) as client:
                try:
                    page = await client.get("/")
                    version = page.text.split("<title>", 1)[-1].split("</title>", 1)[0]
                    script = await client.get(f"/assets/app-{fingerprint(version)}.js")
                    named = await client.get("/version.txt")
                except httpx.HTTPError as error:
                    errors.append(repr(error))
                    continue
            answers = [(r.status_code, r.text) for r in (page, script, named)]
            if answers != [(200, index(version)), (200, asset(version)), (200, version)]:
                errors.append(f"mixed or failed: {answers!r}")
            visits.append(version)
            seen.setdefault(version, trio.Event()).set()

    with trio.fail_after(3 * WAIT):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(visitor)
            await seen["v1"].wait()
            write_site(folder, "v2")
            (folder / "src").rename(tmp_path / "old-src")
            (folder / "dist").rename(folder / "src")
            seen["v2"] = trio.Event()
            out = await deploy_site(daemon, folder, port)
            assert "==> building" in out
            assert (await get(port, "/")).text == index("v2")  # at once, for a new visitor
            await seen["v2"].wait()
            seen["v1"] = trio.Event()
            back = await daemon.ok("rollback", "site")
            assert "building" not in back  # the old release folder, as it was: no rebuild
            assert (await get(port, "/")).text == index("v1")
            await seen["v1"].wait()
            stopping.set()
    assert errors == []
    assert "v2" in visits
    builds = (daemon.data_dir / "services" / "site" / "data" / "builds").read_text()
    assert builds == "b\nb\n"


async def test_as_root_the_site_s_own_user_runs_its_caddy(tmp_path: Path) -> None:
    """The release is its service user's once the build ran as that user; the config the
    deploy writes after the build must be too, or Caddy cannot read it."""
    folder = write_site(tmp_path / "site", "v1")
    data = Path(tempfile.mkdtemp(prefix="dployr-static-"))  # pytest's folders are 0700
    try:
        daemon = HelperDaemon(data, shared_user=False)
        await daemon.start()
        try:
            port = free_port()
            body = {
                "remote": {"url": str(folder)},
                "type": "static",
                "port": port,
                "build_cmd": "touch dist/built",
                "restart": {"min_uptime": 0.3},
            }
            async with daemon.client() as api:
                response = await api.post("/services/site/deploy", json=body)
                assert response.status_code == 202, response.text
                await daemon.wait_log("site", "deploy 1: succeeded")
                pid = (await api.get("/services/site")).json()["pid"]
            assert (await get(port, "/")).text == index("v1")
            assert psutil.Process(pid).uids().real >= 690000  # a user of its own
        finally:
            assert await daemon.stop() == 0
    finally:
        shutil.rmtree(data)


async def test_the_example_site_deploys_from_its_folder(daemon: Daemon, tmp_path: Path) -> None:
    folder = tmp_path / "site"
    shutil.copytree(EXAMPLE, folder)
    port = free_port()
    toml = (folder / "dployr.toml").read_text().replace("port = 8081", f"port = {port}")
    (folder / "dployr.toml").write_text(toml + "\n[restart]\nmin_uptime = 0.3\n")
    out = await daemon.ok("deploy", cwd=folder)
    assert "==> publishing public/ (the first of dist, build, public): 404.html" in out
    home = await get(port, "/")
    assert "<h1>Hello from dployr</h1>" in home.text
    assert home.headers["x-frame-options"] == "DENY"
    assert (await get(port, "/home")).headers["location"] == "/"
    missing = await get(port, "/nope")
    assert missing.status_code == 404
    assert "No such page" in missing.text


async def test_a_page_from_before_a_redeploy_still_gets_its_assets(
    daemon: Daemon, tmp_path: Path
) -> None:
    """A visitor who loaded v1's page just before v2 went live asks for v1's fingerprinted
    script afterwards, on a new connection: it is served (from v1's folder), never a 404.
    Nothing else of v1 is: its other files are gone with it."""
    folder = write_site(tmp_path / "site", "v1")
    (folder / "dist" / "old.html").write_text("only in v1\n")
    port = free_port()
    await deploy_site(daemon, folder, port)
    write_site(folder, "v2")
    await deploy_site(daemon, folder, port)
    assert (await get(port, "/")).text == index("v2")
    old = await get(port, f"/assets/app-{fingerprint('v1')}.js")
    assert (old.status_code, old.text) == (200, asset("v1"))
    assert old.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert (await get(port, "/old.html")).status_code == 404
    assert (await get(port, "/assets/app-00000000.js")).status_code == 404
    new = await get(port, f"/assets/app-{fingerprint('v2')}.js")
    assert (new.status_code, new.text) == (200, asset("v2"))
