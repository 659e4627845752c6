"""``dployr instances`` (list, add, remove), ``dployr instance`` and ``deploy --instance``
against a real daemon, and who may use them."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cli.conftest import Daemon

pytestmark = pytest.mark.slow


@pytest.fixture
async def up(tmp_path: Path) -> AsyncIterator[Daemon]:
    daemon = await Daemon.start(tmp_path / "data")
    try:
        yield daemon
    finally:
        code, _ = await daemon.stop()
        assert code == 0


async def test_instances_are_added_shown_and_removed(up: Daemon, tmp_path: Path) -> None:
    added = await up.cli("instances", "add", "east")
    assert added.code == 0, added
    token = added.out.strip()
    assert token
    assert f"  dployr agent --join {up.url} --token {token}\n" in added.err
    assert "shown only this once" in added.err

    shown = await up.ok("instances")
    assert shown.startswith("instance local (")
    assert re.search(r"\n  connected; (cpu .*)?disk [0-9.]+ [KMGT]iB free\n", shown), shown
    assert "instance east, 0 services\n  pending: its agent has not joined yet\n" in shown
    assert token not in shown
    listed = json.loads(await up.ok("instances", "--json"))
    states = [(i["name"], i["state"]) for i in listed]
    assert states == [("local", "connected"), ("east", "pending")]
    east = json.loads(await up.ok("instance", "east", "--json"))
    assert (east["name"], east["state"], east["services"]) == ("east", "pending", [])

    for args, message in (
        (("instances", "add", "east"), "east"),
        (("instances", "add", "local"), "local"),
        (("instances", "add", "Not_A_Name"), "invalid instance name 'Not_A_Name'"),
        (("instances", "remove", "local"), "local is this control plane's own instance"),
        (("instances", "remove", "west"), "no instance named 'west'"),
        (("instance", "west"), "no instance 'west'"),
    ):
        assert message in (await up.cli(*args)).one_line_error(), args

    # A deploy to an instance whose agent never joined, or to none, changes nothing.
    for instance, message in (
        ("east", "instance east has not joined yet"),
        ("mars", "no instance 'mars'"),
    ):
        refused = await up.cli(
            "deploy", "--name", "web", "--remote", str(tmp_path), "--run-cmd", "true",
            "--instance", instance,
        )  # fmt: skip
        assert message in refused.one_line_error(), instance
    # A blueprint's instance field places it the same way.
    blueprint = tmp_path / "dployr.toml"
    blueprint.write_text(
        f'name = "web"\nremote = "{tmp_path}"\nrun_cmd = "true"\ninstance = "mars"\n'
    )
    refused = await up.cli("deploy", "--blueprint", str(blueprint))
    assert "no instance 'mars'" in refused.one_line_error()
    blueprint.write_text(f'name = "web"\nremote = "{tmp_path}"\nrun_cmd = "true"\ninstance = 7\n')
    refused = await up.cli("deploy", "--blueprint", str(blueprint))
    assert "instance must be text, not 7" in refused.one_line_error()
    assert json.loads(await up.ok("list", "--json")) == []

    assert await up.ok("instances", "remove", "east") == "removed the instance east\n"
    listed = json.loads(await up.ok("instances", "--json"))
    assert [i["name"] for i in listed] == ["local"]


async def test_only_an_admin_token_adds_or_removes_an_instance(up: Daemon) -> None:
    async with up.http() as admin:
        tokens = {}
        for name, body in (
            ("reader", {"scope": "read"}),
            ("deployer", {"scope": "deploy"}),
            ("one", {"scope": "admin", "service": "web"}),
        ):
            created = await admin.post("/tokens", json={"name": name, **body})
            assert created.status_code == 201, created.text
            tokens[name] = created.json()["token"]
        assert (await admin.post("/instances", json={"name": "east"})).status_code == 201
    for name in ("reader", "deployer"):
        async with up.http(tokens[name]) as http:
            assert (await http.get("/instances")).status_code == 200
            for response in (
                await http.post("/instances", json={"name": "west"}),
                await http.delete("/instances/east"),
            ):
                assert response.status_code == 403, name
                assert "needs an admin token" in response.json()["error"]["message"]
    async with up.http(tokens["one"]) as http:  # limited to one service: no instance
        for response in (
            await http.get("/instances"),
            await http.get("/instances/local"),
            await http.post("/instances", json={"name": "west"}),
        ):
            assert response.status_code == 403
            assert "limited to the service 'web'" in response.json()["error"]["message"]
    async with up.http() as admin:
        names = [i["name"] for i in (await admin.get("/instances")).json()]
        assert names == ["local", "east"]
        for body in ({}, {"name": 7}, {"name": "east", "x": 1}, {"name": "UP"}):
            assert (await admin.post("/instances", json=body)).status_code == 422, body
