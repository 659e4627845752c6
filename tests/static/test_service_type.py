"""The service ``type`` (web, worker, static): how it is given, defaulted and checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dployr import blueprint, serde
from dployr.errors import SpecError
from dployr.models import ServiceSettings, ServiceType, Source
from tests.cli.conftest import Daemon
from tests.helpers import PYTHON

SOURCE = Source("/srv/app")


def test_without_a_type_a_service_with_a_port_is_web_and_one_without_a_worker() -> None:
    assert ServiceSettings(SOURCE, "python3 app.py", port=8080).type is ServiceType.WEB
    assert ServiceSettings(SOURCE, "python3 worker.py").type is ServiceType.WORKER


def test_settings_stored_before_types_existed_still_load() -> None:
    old = '{"source": {"remote": "/srv/app"}, "run_cmd": "python3 app.py", "port": 8080}'
    assert serde.loads(old, ServiceSettings).type is ServiceType.WEB


def test_a_blueprint_gives_the_type_and_a_static_site_needs_no_run_cmd() -> None:
    plan = blueprint.from_data({"remote": ".", "type": "static", "port": 8080})
    assert plan.settings.type is ServiceType.STATIC
    assert plan.settings.run_cmd == ""
    assert plan.body()["type"] == "static"
    worker = blueprint.from_data({"remote": ".", "type": "worker", "run_cmd": "./work"})
    assert worker.settings.type is ServiceType.WORKER


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"remote": ".", "run_cmd": "a", "type": "lambda"}, "type must be one of web, worker"),
        ({"remote": ".", "run_cmd": "a", "type": 3}, "type must be one of"),
        ({"remote": ".", "type": "web", "port": 80}, "run-cmd is required"),
        ({"remote": ".", "type": "static"}, "a static site needs a port"),
        ({"remote": ".", "type": "static", "port": 80, "run_cmd": "x"}, "has no run-cmd"),
        (
            {"remote": ".", "type": "static", "port": 80, "listen_fds": True},
            "listen-fds is not for a static site",
        ),
    ],
)
def test_a_wrong_type_or_a_type_without_what_it_needs_is_named(
    data: dict[str, object], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        blueprint.from_data(data)


@pytest.mark.slow
async def test_deploy_type_flag_is_kept_in_the_settings(
    daemon: Daemon, worker_folder: Path
) -> None:
    await daemon.ok(
        "deploy", "--name", "jobs", "--type", "worker", "--remote", str(worker_folder),
        "--run-cmd", f"{PYTHON} worker.py", "--min-uptime", "0.3",
    )  # fmt: skip
    view = json.loads(await daemon.ok("settings", "jobs", "--json"))
    assert view["settings"]["type"] == "worker"
    assert "type         worker" in await daemon.ok("settings", "jobs")
    bad = await daemon.cli("deploy", "--name", "x", "--type", "cron", "--remote", ".")
    assert bad.code != 0
    assert "'cron' is not one of 'web', 'worker', 'static'" in bad.err
