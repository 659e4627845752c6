"""The pure half of static sites: which folder is published, the rule files, the config."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dployr import blueprint
from dployr.engine import static
from dployr.engine.errors import DeployFailed
from dployr.errors import SpecError
from dployr.staticsite import HeaderRule, Redirect, StaticOptions


@pytest.mark.parametrize(
    ("folders", "chosen"),
    [
        (["public", "build", "dist"], "dist"),
        (["public", "build"], "build"),
        (["public", "src"], "public"),
        (["src"], "."),
    ],
)
def test_the_publish_dir_is_the_first_of_dist_build_public(
    tmp_path: Path, folders: list[str], chosen: str
) -> None:
    for name in folders:
        (tmp_path / name).mkdir()
    assert static.choose_publish_dir(tmp_path, None) == chosen


def test_a_publish_dir_must_exist_and_stay_inside_the_release(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    assert static.choose_publish_dir(tmp_path, "site") == "site"
    with pytest.raises(SpecError, match="publish-dir 'out' is not a folder of the release"):
        static.choose_publish_dir(tmp_path, "out")
    (tmp_path / "dist").symlink_to("/etc")
    with pytest.raises(SpecError, match="publish-dir 'dist' leads outside the release"):
        static.choose_publish_dir(tmp_path, None)


@pytest.mark.parametrize("value", ["../up", "/etc", ".git", "a/../../b", "a b", "dist/", ""])
def test_a_publish_dir_setting_is_a_plain_relative_folder(value: str) -> None:
    with pytest.raises(SpecError, match="publish-dir"):
        StaticOptions(publish_dir=value)


def test_redirect_files_are_parsed_with_their_line_named() -> None:
    text = "# comment\n\n/old /new\n/blog/* /news/:splat 302!\n/app/* /index.html 200 # spa\n"
    assert static.parse_redirects(text) == (
        Redirect("/old", "/new", 301),
        Redirect("/blog/*", "/news/:splat", 302),
        Redirect("/app/*", "/index.html", 200),
    )
    for bad, message in [
        ("/a", "line 1: a rule is FROM TO"),
        ("/a /b 302 extra", "a rule is FROM TO"),
        ("/a /b moved", "'moved' is not a status code"),
        ("/a /b 404", "status must be one of"),
        ("/a /{env.SECRET}", "may not hold braces"),
        ("/a https://x.example/ 200", "a status 200 rule serves a path of the site"),
        ("/a /b/:splat", "has no '\\*' for the :splat"),
        ("a /b", "must be a URL path"),
        ("/a*b /c", "'\\*' only at its end"),
    ]:
        with pytest.raises(SpecError, match=message):
            static.parse_redirects(bad)


def test_header_files_are_parsed_with_their_line_named() -> None:
    text = "/*\n  X-Frame-Options: DENY\n  Referrer-Policy: no-referrer\n# c\n/a\n  X-A: 1\n"
    assert static.parse_headers(text) == (
        HeaderRule("/*", {"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}),
        HeaderRule("/a", {"X-A": "1"}),
    )
    with pytest.raises(SpecError, match="line 1: expected a path"):
        static.parse_headers("  X-A: 1\n")
    with pytest.raises(SpecError, match="line 1: the header rule for '/a' sets no header"):
        static.parse_headers("/a\n/b\n  X-B: 2\n")
    with pytest.raises(SpecError, match="may not hold braces"):
        static.parse_headers("/a\n  X-A: {env.HOME}\n")
    with pytest.raises(SpecError, match="is not a header name"):
        static.parse_headers("/a\n  Bad Name: 1\n")


@pytest.mark.parametrize(
    ("path", "fingerprinted"),
    [
        ("/assets/index-BjK3x9aQ.js", True),  # Vite
        ("/static/js/main.3f2a1b9c.js", True),  # create-react-app
        ("/main.3f2a1b9c0d1e2f3a4b5c.css", True),  # webpack contenthash
        ("/app.1a2b3c4d.js.map", True),
        ("/assets/app-settings.js", False),  # a word, not a hash
        ("/assets/jquery-3.6.0.min.js", False),
        ("/index.html", False),
        ("/logo.png", False),
    ],
)
def test_fingerprinted_assets_are_told_from_plain_files(path: str, fingerprinted: bool) -> None:
    assert bool(re.search(static.FINGERPRINTED, path)) is fingerprinted


def test_the_config_keeps_caddy_to_itself() -> None:
    config = static.caddy_config("dist")
    assert config["admin"] == {"disabled": True, "config": {"persist": False}}
    server = config["apps"]["http"]["servers"]["site"]
    assert server["listen"] == ["127.0.0.1:{env.PORT}"]
    text = json.dumps(config)
    assert "try_files" not in text  # no SPA fallback unless asked
    assert "/404.html" not in text  # no 404 page unless the site has one
    spa = json.dumps(static.caddy_config("dist", spa=True, not_found_page=True))
    assert '"try_files": ["{http.request.uri.path}", "/index.html"]' in spa
    assert '"uri": "/404.html"' in spa


def test_publish_writes_the_config_into_the_release(tmp_path: Path) -> None:
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "_redirects").write_text("/a /b\n")
    said = static.publish(tmp_path, StaticOptions(redirects=(Redirect("/c", "/d", 307),)))
    assert said == "publishing build/ (the first of dist, build, public): 2 redirect rules"
    config = json.loads((tmp_path / static.CONFIG).read_text())
    routes = config["apps"]["http"]["servers"]["site"]["routes"][0]["handle"][0]["routes"]
    locations = [
        r["handle"][0]["headers"]["Location"][0] for r in routes if "headers" in r["handle"][0]
    ]
    assert locations == ["/b", "/d"]  # the file's rules, then the settings'
    (tmp_path / "build" / "_headers").write_bytes(b"\xff\xfe")
    with pytest.raises(DeployFailed, match="cannot publish the site: _headers is not UTF-8"):
        static.publish(tmp_path, StaticOptions())


def test_the_command_keeps_caddy_files_in_the_data_dir() -> None:
    assert static.command(Path("/srv/my data")) == (
        "env HOME='/srv/my data/.caddy' XDG_CONFIG_HOME='/srv/my data/.caddy/config' "
        "XDG_DATA_HOME='/srv/my data/.caddy/data' caddy run --config .dployr/caddy.json"
    )


def test_static_options_are_only_for_a_static_site() -> None:
    with pytest.raises(SpecError, match="publish-dir, spa, redirects and headers are for"):
        blueprint.from_data({"remote": ".", "run_cmd": "x", "static": {"spa": True}})
    plan = blueprint.from_data(
        {
            "remote": ".",
            "type": "static",
            "port": 80,
            "static": {"redirects": [{"path": "/a", "to": "/b"}], "headers": []},
        }
    )
    assert plan.settings.static.redirects == (Redirect("/a", "/b", 301),)
    with pytest.raises(SpecError, match="spa"):
        blueprint.from_data({"remote": ".", "type": "static", "port": 80, "static": {"spa": 1}})
