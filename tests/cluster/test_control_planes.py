"""Which control plane leads, and which answered: ``GET /api/v1/control-planes`` and
``dployr control-planes``, from two real ``dployr up`` on one real PostgreSQL (the leader
``kill -9``-ed), and from one ``dployr up`` on SQLite (the default)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from dployr.cli.control_planes import show_all
from dployr.protocol.messages import ControlPlaneView
from tests.cli.conftest import WAIT, Daemon
from tests.cluster.test_peers import LEADS, TAKEOVER
from tests.helpers import Output
from tests.pg import postgres, postgres_url

__all__ = ["postgres", "postgres_url"]  # fixtures, used by name

LEADER_LINE = re.compile(r"this control plane \((\w+), (\S+)\) leads the cluster")
"""What ``dployr up --database`` prints when it starts leading: its id and URL."""


async def listed(daemon: Daemon) -> list[dict[str, Any]]:
    """The control planes as ``daemon``'s API lists them."""
    async with daemon.http() as http:
        response = await http.get("/control-planes")
    assert response.status_code == 200, response.text
    planes: list[dict[str, Any]] = response.json()
    return planes


def who(planes: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], str, str]:
    """Every control plane (id, url), the leader's id, and the id of the one that answered."""
    (leader,) = [p["id"] for p in planes if p["leads"]]
    (answered,) = [p["id"] for p in planes if p["self"]]
    return [(p["id"], p["url"]) for p in planes], leader, answered


def row_of(table: str, url: str) -> str:
    """The line of ``dployr control-planes``'s table that shows ``url``."""
    (line,) = [line for line in table.splitlines() if f" {url} " in line]
    return line


@pytest.mark.slow
async def test_both_control_planes_name_the_same_leader_and_the_next_one_once_it_is_killed(
    postgres_url: str, tmp_path: Path
) -> None:
    a = await Daemon.start(tmp_path / "a", "--database", postgres_url)
    assert a.process.stdout is not None
    a_out = Output(a.process.stdout)
    b: Daemon | None = None
    try:
        await a_out.wait_for(LEADS)
        said = LEADER_LINE.search(a_out.text)
        assert said is not None, a_out.text
        a_id = said[1]
        assert said[2] == a.url
        b = await Daemon.start(tmp_path / "b", "--database", postgres_url)
        assert b.process.stdout is not None
        b_out = Output(b.process.stdout)

        # Asked either, the API names both, A leading, and the one asked as the one that
        # answered; the CLI says the same.
        planes_a, leader_a, answered_a = who(await listed(a))
        planes_b, leader_b, answered_b = who(await listed(b))
        assert planes_a == planes_b
        assert [url for _, url in planes_a] == [a.url, b.url]  # oldest first
        b_id = planes_a[1][0]
        assert (leader_a, answered_a) == (a_id, a_id)
        assert (leader_b, answered_b) == (a_id, b_id)
        for daemon in (a, b):
            assert who(json.loads(await daemon.ok("control-planes", "--json"))) == who(
                await listed(daemon)
            )
        table = await b.ok("control-planes")
        assert row_of(table, a.url).startswith("*  ")
        assert row_of(table, a.url).endswith("leads the cluster")
        assert row_of(table, b.url).startswith("   ")
        assert row_of(table, b.url).endswith("answered")

        # A dies without a word: B leads, and says so as A's row waits to be forgotten.
        a.process.kill()
        with trio.fail_after(WAIT):
            await a.process.wait()
        with trio.fail_after(TAKEOVER):
            await b_out.wait_for(LEADS)
        after = await listed(b)
        planes, leader, answered = who(after)
        assert (leader, answered) == (b_id, b_id)
        assert planes == [(a_id, a.url), (b_id, b.url)]
        dead, alive = after
        assert dead["leader_since"] is None
        assert alive["leader_since"] >= dead["last_seen"]
        table = await b.ok("control-planes")
        assert row_of(table, b.url).startswith("*  ")
        assert row_of(table, b.url).endswith("leads the cluster; answered")
        assert not row_of(table, a.url).startswith("*")
    finally:
        a.process.kill()
        with trio.fail_after(WAIT):
            await a.process.wait()
        if b is not None:
            code, _ = await b.stop()
            assert code == 0


async def test_one_control_plane_on_sqlite_lists_itself_leading(tmp_path: Path) -> None:
    daemon = await Daemon.start(tmp_path / "data")
    try:
        (plane,) = await listed(daemon)
        assert plane["url"] == daemon.url
        assert (plane["leads"], plane["self"]) == (True, True)
        assert plane["started_at"] <= plane["leader_since"]
        assert plane["last_seen"] >= plane["started_at"]

        table = (await daemon.ok("control-planes")).splitlines()
        assert table[0].split() == ["ID", "URL", "STARTED", "LAST", "SEEN"]
        assert table[1].startswith(f"*  {plane['id']}  {daemon.url}  ")
        assert table[1].endswith("leads the cluster; answered")
        assert len(table) == 2

        # Any token reads it, as the other read routes; none is refused in one line.
        for name, limits in (("viewer", ()), ("web-ci", ("--service", "web"))):
            created = await daemon.cli("tokens", "create", name, "--scope", "read", *limits)
            assert created.code == 0, created
            token = created.out.strip()
            async with daemon.http(token) as http:
                response = await http.get("/control-planes")
            assert response.status_code == 200, response.text
            assert response.json() == [plane | {"last_seen": response.json()[0]["last_seen"]}]
        async with daemon.http() as http:
            refused = await http.get("/control-planes", headers={"Authorization": ""})
        assert refused.status_code == 401
        assert refused.json()["error"]["message"].startswith("missing API token")
    finally:
        code, _ = await daemon.stop()
        assert code == 0


def test_a_table_with_no_leader_says_another_takes_over(capsys: pytest.CaptureFixture[str]) -> None:
    # Between a leader's end and the next one's record (a few milliseconds), none leads.
    now = time.time()
    show_all((ControlPlaneView("b1", "http://cp-2:7879", now - 60, now - 2, False, is_self=True),))
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("   b1  http://cp-2:7879  ")
    assert lines[1].endswith("  answered")
    assert lines[2] == "no control plane leads right now: another takes over within seconds"
