"""A static site's type and publishing changed with ``dployr settings`` (and the settings
API): stored now, served as before until the next deploy, which applies them. A real
daemon, the real CLI, real Caddy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import Daemon, free_port
from tests.helpers import PYTHON
from tests.static.test_static_sites import deploy_site, get, index, write_site

pytestmark = pytest.mark.slow


async def test_a_folder_served_by_a_run_command_becomes_a_static_site(
    daemon: Daemon, tmp_path: Path
) -> None:
    """The issue's newcomer: a plain HTML folder served with ``http.server`` shows its
    dotfiles; ``settings --type static`` makes the next deploy serve it with Caddy."""
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "index.html").write_text(index("v1"))
    (folder / ".env").write_text("SECRET=hunter2\n")
    port = free_port()
    await daemon.ok(
        "deploy", "--name", "site", "--remote", str(folder), "--port", str(port),
        "--run-cmd", f"{PYTHON} -m http.server --bind 127.0.0.1 $PORT", "--min-uptime", "0.3",
    )  # fmt: skip
    assert (await get(port, "/.env")).text == "SECRET=hunter2\n"

    shown = await daemon.ok("settings", "site", "--type", "static", "--spa")
    assert "type         static  (waits for the next deploy)" in shown
    assert "run-cmd      -  (waits for the next deploy)" in shown
    assert "static       publish-dir dist, build or public (the first there); single-page app" in (
        shown
    )
    assert (await get(port, "/.env")).status_code == 200  # nothing changes before a deploy
    view = json.loads(await daemon.ok("settings", "site", "--json"))
    assert view["settings"]["type"] == "static"
    assert view["settings"]["run_cmd"] == ""
    assert view["active"]["type"] == "web"

    out = await daemon.ok("deploy", "--name", "site")
    assert "==> publishing ./ (none of dist, build, public exists): single-page app" in out
    assert (await get(port, "/.env")).status_code == 404
    route = await get(port, "/users/42")
    assert (route.status_code, route.text) == (200, index("v1"))
    assert "waits for the next deploy" not in await daemon.ok("settings", "site")


async def test_a_static_site_s_publishing_changes_at_the_next_deploy(
    daemon: Daemon, tmp_path: Path
) -> None:
    folder = write_site(tmp_path / "site", "v1")
    (folder / "public").mkdir()
    (folder / "public" / "index.html").write_text(index("public"))
    port = free_port()
    await deploy_site(daemon, folder, port)

    shown = await daemon.ok(
        "settings", "site", "--publish-dir", "public",
        "--redirect", "/old /new 302", "--redirect", "/blog/* /news/:splat",
        "--header", "/* X-Test: yes", "--header", "/* X-Other: 1",
    )  # fmt: skip
    assert (
        "static       publish-dir public; 2 redirect rules; 1 header rule  "
        "(waits for the next deploy)"
    ) in shown
    assert (await get(port, "/")).text == index("v1")  # served as it was
    assert (await get(port, "/old")).status_code == 404

    out = await daemon.ok("deploy", "--name", "site")
    assert "==> publishing public/ (publish-dir): 2 redirect rules, 1 header rule" in out
    home = await get(port, "/")
    assert home.text == index("public")
    assert (home.headers["x-test"], home.headers["x-other"]) == ("yes", "1")
    moved = await get(port, "/old")
    assert (moved.status_code, moved.headers["location"]) == (302, "/new")
    assert (await get(port, "/blog/a/b")).headers["location"] == "/news/a/b"

    # '' removes the rules and goes back to the first of dist, build and public; the
    # options not given stay.
    shown = await daemon.ok("settings", "site", "--redirect", "", "--publish-dir", "")
    assert "static       publish-dir dist, build or public (the first there); 1 header rule" in (
        shown
    )

    # The settings API takes a site's publishing whole: what it leaves out is the default.
    async with daemon.http() as api:
        answer = await api.patch("/services/site/settings", json={"static": {"spa": True}})
        assert answer.status_code == 200, answer.text
        assert answer.json()["settings"]["static"] == {
            "publish_dir": None,
            "spa": True,
            "redirects": [],
            "headers": [],
        }
        assert "static" in answer.json()["pending"]
    out = await daemon.ok("deploy", "--name", "site")
    assert "==> publishing dist/ (the first of dist, build, public): single-page app" in out
    assert (await get(port, "/no/such/route")).text == index("v1")


async def test_wrong_static_settings_are_one_line_errors_and_change_nothing(
    daemon: Daemon, tmp_path: Path
) -> None:
    folder = write_site(tmp_path / "site", "v1")
    port = free_port()
    await deploy_site(daemon, folder, port)
    before = json.loads(await daemon.ok("settings", "site", "--json"))["settings"]

    cases = [
        (["--redirect", "/a"], "error: --redirect '/a': a rule is FROM TO [STATUS]"),
        (["--redirect", "/a /b 999"], "error: --redirect '/a /b 999': redirect status must be"),
        (["--header", "/a X"], "error: --header '/a X': a header rule is PATH Name: value"),
        (["--redirect", "/a ftp://b"], "error: --redirect '/a ftp://b': redirect target 'ftp"),
        (["--header", "/a X-A: {env.SECRET}"], "error: header X-A '{env.SECRET}' may not hold"),
        (["--publish-dir", "../up"], "error: publish-dir '../up' must be a folder inside"),
        (["--type", "web"], "error: run-cmd is required"),
        (["--type", "static", "--run-cmd", "x"], "error: a static site has no run-cmd"),
    ]
    for flags, message in cases:
        result = await daemon.cli("settings", "site", *flags)
        assert result.one_line_error().startswith(message), (flags, result.err)
    after = json.loads(await daemon.ok("settings", "site", "--json"))["settings"]
    assert after == before

    # Leaving the static type drops its publishing; a web service has none to set.
    shown = await daemon.ok(
        "settings", "site", "--type", "web", "--run-cmd", f"{PYTHON} -m http.server $PORT"
    )
    assert "static " not in shown
    view = json.loads(await daemon.ok("settings", "site", "--json"))
    assert view["settings"]["static"]["publish_dir"] is None
    web_only = await daemon.cli("settings", "site", "--spa")
    assert web_only.one_line_error() == (
        "error: publish-dir, spa, redirects and headers are for --type static"
    )


async def test_a_deploy_that_changes_the_type_drops_what_the_old_one_had(
    daemon: Daemon, tmp_path: Path
) -> None:
    """``deploy --type`` on a service that exists keeps its other settings, less what only
    its old type had: the run command of a site made static, a static site's publishing."""
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "index.html").write_text(index("v1"))
    (folder / ".env").write_text("SECRET=hunter2\n")
    port = free_port()
    serve = f"{PYTHON} -m http.server --bind 127.0.0.1 $PORT"
    await daemon.ok(
        "deploy", "--name", "site", "--remote", str(folder), "--port", str(port),
        "--run-cmd", serve, "--min-uptime", "0.3",
    )  # fmt: skip
    out = await daemon.ok("deploy", "--name", "site", "--type", "static", "--spa")
    assert "==> publishing ./ (none of dist, build, public exists): single-page app" in out
    assert (await get(port, "/.env")).status_code == 404
    assert (await get(port, "/users/42")).text == index("v1")

    await daemon.ok("deploy", "--name", "site", "--type", "web", "--run-cmd", serve)
    assert (await get(port, "/.env")).text == "SECRET=hunter2\n"
    view = json.loads(await daemon.ok("settings", "site", "--json"))
    assert (view["settings"]["type"], view["settings"]["static"]["spa"]) == ("web", False)
