"""Blueprints in TOML, YAML and JSON; ``dployr deploy`` alone in a folder with dployr.toml."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from dployr import blueprint
from dployr.errors import SpecError
from tests.cli.conftest import Daemon, free_port, http_get
from tests.helpers import PYTHON

EXAMPLE = Path(__file__).parents[2] / "examples" / "hello"

FULL = {
    "name": "my-api",
    "description": "The public API",
    "source": "git",
    "remote": {"url": "https://example.invalid/me/my-api.git", "branch": "main"},
    "build_cmd": "pip install -r requirements.txt",
    "run_cmd": "python app.py",
    "port": 8080,
    "working_dir": "src",
    "health_check": "/health",
    "env_vars": {"LOG_LEVEL": "info"},
    "secrets": {"DATABASE_URL": "postgres://x"},
}

TOML = """\
name = "my-api"
description = "The public API"
source = "git"
build_cmd = "pip install -r requirements.txt"
run_cmd = "python app.py"
port = 8080
working_dir = "src"
health_check = "/health"

[remote]
url = "https://example.invalid/me/my-api.git"
branch = "main"

[env_vars]
LOG_LEVEL = "info"

[secrets]
DATABASE_URL = "postgres://x"
"""


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".yml", ".json"])
def test_the_three_formats_say_the_same(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"dployr{suffix}"
    if suffix == ".toml":
        path.write_text(TOML)
    elif suffix == ".json":
        path.write_text(json.dumps(FULL))
    else:
        path.write_text(yaml.safe_dump(FULL))
    plan = blueprint.load(path)
    assert plan == blueprint.from_data(FULL)
    assert plan.name == "my-api"
    assert plan.settings.source.remote == "https://example.invalid/me/my-api.git"
    assert plan.settings.source.branch == "main"
    assert plan.settings.port == 8080
    assert plan.settings.working_dir == "src"
    assert dict(plan.env_vars) == {"LOG_LEVEL": "info"}
    assert dict(plan.secrets) == {"DATABASE_URL": "postgres://x"}
    assert blueprint.from_data(plan.body()) == plan  # the deploy body says the same again


def test_remote_may_be_just_the_url_and_the_rest_has_defaults() -> None:
    plan = blueprint.from_data({"remote": "/srv/app", "run_cmd": "./run"})
    assert plan.name is None
    assert plan.settings.source.remote == "/srv/app"
    assert plan.settings.port is None
    assert plan.settings.build_cmd is None
    assert plan.settings.working_dir == "."
    assert plan.body()["remote"] == {"url": "/srv/app"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"remote": ".", "run_cmd": True}, "run_cmd must be text"),
        ({"remote": ".", "run_cmd": "a", "port": True}, "port must be a whole number"),
        ({"remote": ".", "run_cmd": "a", "port": 8080.5}, "port must be a whole number"),
        ({"remote": ".", "run_cmd": "a", "stop_grace": "5"}, "stop_grace"),
        ({"remote": 3, "run_cmd": "a"}, "remote must be"),
        ({"remote": {"url": "."}, "run_cmd": "a", "source": "svn"}, "source must be"),
        ({"remote": {"url": ".", "branch": 1}, "run_cmd": "a"}, "remote.branch"),
        ({"remote": ".", "run_cmd": "a", "env_vars": ["A"]}, "env_vars must be a table"),
        ({"remote": ".", "run_cmd": "a", "secrets": {"K": 1}}, "secrets.K must be text"),
        ({"remote": ".", "run_cmd": "a", "working_dir": "../up"}, "working-dir"),
        ({"remote": ".", "run_cmd": ""}, "run-cmd is required"),
        ({"remote": ".", "run_cmd": "a", "name": "Bad Name"}, "invalid service name"),
        ({"remote": ".", "run_cmd": "a", "bogus": 1}, "unknown field: bogus"),
        ({"remote": {"url": ".", "tag": "x"}, "run_cmd": "a"}, "unknown field: tag"),
    ],
)
def test_wrong_fields_are_named(data: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        blueprint.from_data(data)


def copy_example(tmp_path: Path) -> tuple[Path, int]:
    """examples/hello in a temporary folder, on a free port, run by this interpreter."""
    folder = tmp_path / "hello"
    shutil.copytree(EXAMPLE, folder)
    port = free_port()
    toml = (folder / "dployr.toml").read_text()
    toml = toml.replace("port = 8080", f"port = {port}")
    toml = toml.replace('run_cmd = "python3 app.py"', f'run_cmd = "{PYTHON} app.py"')
    (folder / "dployr.toml").write_text(toml)
    return folder, port


@pytest.mark.slow
async def test_deploy_alone_in_a_folder_uses_its_dployr_toml(
    daemon: Daemon, tmp_path: Path
) -> None:
    folder, port = copy_example(tmp_path)
    out = await daemon.ok("deploy", cwd=folder)
    assert f"hello is running on port {port}" in out
    assert await http_get(port) == "hello from dployr (deployment 1)\n"
    assert await http_get(port, "/health") == "ok\n"
    settings = json.loads(await daemon.ok("settings", "hello", "--json"))["settings"]
    assert settings["source"]["remote"] == str(folder)
    assert settings["health_check"] == "/health"
    # The same command again redeploys.
    out = await daemon.ok("deploy", cwd=folder)
    assert await http_get(port) == "hello from dployr (deployment 2)\n"

    # YAML and JSON blueprints, from another folder: the remote is relative to the file.
    data = blueprint.load(folder / "dployr.toml").body()
    data["env_vars"] = {"GREETING": "hi"}
    (folder / "dployr.yaml").write_text(yaml.safe_dump({**data, "remote": {"url": "."}}))
    out = await daemon.ok("deploy", "--blueprint", str(folder / "dployr.yaml"), cwd=tmp_path)
    assert await http_get(port) == "hi from dployr (deployment 3)\n"
    data["env_vars"] = {"GREETING": "hey"}
    (folder / "dployr.json").write_text(json.dumps({**data, "remote": "."}))
    out = await daemon.ok("deploy", "--blueprint", "hello/dployr.json", cwd=tmp_path)
    assert await http_get(port) == "hey from dployr (deployment 4)\n"
    # Flags win over the blueprint.
    out = await daemon.ok(
        "deploy", "--blueprint", "hello/dployr.json", "--description", "flagged", cwd=tmp_path
    )
    assert json.loads(await daemon.ok("get", "hello", "--json"))["description"] == "flagged"

    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = await daemon.cli("deploy", cwd=empty)
    assert "nothing to deploy" in nothing.one_line_error()
