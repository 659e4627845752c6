"""The cluster as one instance: placement, merged lists and feeds, moves, away members.

Real instances (each its own data dir, store and processes) behind one ClusterHandle.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

from dployr.cluster import ClusterHandle, NoMembers
from dployr.protocol.errors import Error
from dployr.protocol.events import DeploymentChanged
from dployr.protocol.feed import Gap
from dployr.protocol.messages import (
    AddInstance,
    Delete,
    Deploy,
    GetInstance,
    GetService,
    ListInstances,
    ListServices,
    ReadLogs,
    RemoveInstance,
    SetEnv,
    Stop,
)
from tests.cli.conftest import free_port
from tests.cluster.conftest import WAIT, Cluster, web_settings
from tests.helpers import pids_of_service, web_repo


async def answer(port: int) -> str:
    async with httpx.AsyncClient(timeout=10) as http:
        return (await http.get(f"http://127.0.0.1:{port}/")).text


async def test_each_service_runs_on_its_instance_and_one_list_shows_them_all(
    cluster: Cluster, tmp_path: Path
) -> None:
    repo = web_repo(tmp_path / "repo")
    ports = {name: free_port() for name in ("home", "api", "jobs")}
    await cluster.deploy(Deploy("home", web_settings(repo, ports["home"])))
    await cluster.deploy(Deploy("api", web_settings(repo, ports["api"]), instance="east"))
    await cluster.deploy(Deploy("jobs", web_settings(repo, ports["jobs"]), instance="west"))

    assert await cluster.listed() == [
        ("api", "east", False),
        ("home", "local", False),
        ("jobs", "west", False),
    ]
    for service, where in (("home", "local"), ("api", "east"), ("jobs", "west")):
        # The process is the instance's, the request reached it, the service answers.
        assert pids_of_service(service, cluster.instances[where].id)
        info = await cluster.router.request(GetService(service))
        assert (info.instance, info.status.value) == (where, "running")
        assert (await answer(ports[service])).startswith("hello v1")
        logs = await cluster.router.request(ReadLogs(service, tail=50))
        assert any("listening on" in line.line for line in logs.lines)
    assert await cluster.state.placement() == {"api": "east", "jobs": "west"}

    # A redeploy without --instance stays where the service is.
    await cluster.deploy(Deploy("api", web_settings(repo, ports["api"])))
    assert pids_of_service("api", cluster.instances["east"].id)
    assert not pids_of_service("api", cluster.instances["local"].id)

    with pytest.raises(Error) as unknown:
        await cluster.router.request(GetService("nope"))
    assert unknown.value.code == "not_found"
    with pytest.raises(Error) as nowhere:
        await cluster.router.request(Deploy("x", web_settings(repo, free_port()), instance="mars"))
    assert (nowhere.value.code, nowhere.value.message) == ("not_found", "no instance 'mars'")

    await cluster.router.request(Delete("api"))
    assert "api" not in await cluster.state.placement()
    assert not pids_of_service("api", cluster.instances["east"].id)
    for name in ("home", "jobs"):
        await cluster.router.request(Stop(name))


async def test_the_merged_feed_carries_every_members_changes(
    cluster: Cluster, tmp_path: Path
) -> None:
    repo = web_repo(tmp_path / "repo")
    cluster.members.leave("west")
    await trio.testing.wait_all_tasks_blocked()
    with cluster.router.subscribe_changes() as changes:
        # West joins after the feed was opened: its changes join the merge.
        cluster.members.connect("west", cluster.instances["west"].handle)
        await trio.testing.wait_all_tasks_blocked()
        deployment = await cluster.deploy(
            Deploy("api", web_settings(repo, free_port()), instance="west")
        )
        seen: list[tuple[str, int, str]] = []
        with trio.fail_after(WAIT):
            async with contextlib.aclosing(aiter(changes)) as entries:
                async for entry in entries:
                    assert not isinstance(entry, Gap)
                    seen += [
                        (c.instance, c.deployment, c.status.value)
                        for c in entry
                        if isinstance(c, DeploymentChanged)
                    ]
                    if ("west", deployment, "succeeded") in seen:
                        break
    await cluster.router.request(Stop("api"))


async def test_moving_a_service_deploys_it_there_then_deletes_the_old_one(
    cluster: Cluster, tmp_path: Path
) -> None:
    repo = web_repo(tmp_path / "repo")
    await cluster.deploy(Deploy("web", web_settings(repo, free_port())))
    await cluster.router.request(SetEnv("web", {"GREETING": "carried"}))
    assert pids_of_service("web", cluster.instances["local"].id)

    # On one machine the new instance needs a port of its own while the old one runs.
    port = free_port()
    await cluster.deploy(Deploy("web", web_settings(repo, port), instance="east"))
    with trio.fail_after(WAIT):
        await cluster.router.moved("web")
    assert await cluster.listed() == [("web", "east", False)]
    assert pids_of_service("web", cluster.instances["east"].id)
    assert not pids_of_service("web", cluster.instances["local"].id)
    assert (await cluster.router.request(GetService("web"))).instance == "east"
    assert (await answer(port)).startswith("hello v1")
    async with httpx.AsyncClient(timeout=10) as http:  # its variables came along
        assert (await http.get(f"http://127.0.0.1:{port}/env/GREETING")).text == "carried"
    assert await cluster.state.placement() == {"web": "east"}
    await cluster.router.request(Stop("web"))


async def test_an_away_instances_services_are_shown_stale_and_unavailable(
    cluster: Cluster, tmp_path: Path
) -> None:
    repo = web_repo(tmp_path / "repo")
    await cluster.deploy(Deploy("api", web_settings(repo, free_port()), instance="west"))
    running = pids_of_service("api", cluster.instances["west"].id)

    # Once the router has taken in what west said last, west's agent goes away.
    await trio.testing.wait_all_tasks_blocked()
    cluster.members.leave("west")
    await trio.testing.wait_all_tasks_blocked()
    assert await cluster.listed() == [("api", "west", True)]
    (row,) = await cluster.router.request(ListServices())
    assert row.status.value == "running"  # as last known
    for request in (GetService("api"), Stop("api"), Deploy("api", instance="west")):
        with pytest.raises(Error) as away:
            await cluster.router.request(request)
        assert away.value.code == "unavailable"
        assert away.value.message.startswith("instance west is away (last seen 20")
    with pytest.raises(Error) as unavailable:
        cluster.router.check_service("api")
    assert unavailable.value.code == "unavailable"
    # Nothing was touched there: the service runs on, with the same process.
    assert pids_of_service("api", cluster.instances["west"].id) == running

    views = {view.name: view for view in await cluster.router.request(ListInstances())}
    assert [views[n].state for n in ("local", "east", "west")] == ["connected"] * 2 + ["away"]
    assert [(s.name, s.stale) for s in views["west"].services] == [("api", True)]

    # Back: its rows are live again.
    handle = cluster.instances["west"].handle
    cluster.members.connect("west", handle)
    await trio.testing.wait_all_tasks_blocked()
    assert await cluster.listed() == [("api", "west", False)]
    await cluster.router.request(Stop("api"))


async def test_instances_are_added_listed_and_removed(cluster: Cluster) -> None:
    token = await cluster.router.request(AddInstance("north"))
    assert token.instance == "north"
    assert token.token
    views = await cluster.router.request(ListInstances())
    assert [(v.name, v.state) for v in views] == [
        ("local", "connected"),
        ("east", "connected"),
        ("north", "pending"),
        ("west", "connected"),
    ]
    assert views[0].id == cluster.instances["local"].id
    assert views[1].id == cluster.instances["east"].id
    for request, code in (
        (AddInstance("north"), "conflict"),
        (AddInstance("local"), "conflict"),
        (RemoveInstance("nope"), "not_found"),
        (RemoveInstance("local"), "invalid"),
    ):
        with pytest.raises(Error) as refused:
            await cluster.router.request(request)
        assert refused.value.code == code, request
    assert (await cluster.router.request(RemoveInstance("north"))).name == "north"
    assert "north" not in [v.name for v in await cluster.router.request(ListInstances())]


class Meeting:
    """Members' list requests held until every member has been asked one."""

    def __init__(self, members: int) -> None:
        self.members = members
        self.asked = 0
        self.everyone = trio.Event()

    async def meet(self) -> None:
        self.asked += 1
        if self.asked % self.members == 0:
            everyone, self.everyone = self.everyone, trio.Event()
            everyone.set()
        else:
            await self.everyone.wait()


class MeetsTheOthers:
    """A member whose lists wait at a meeting of all members (anything else as it is)."""

    def __init__(self, handle: object, meeting: Meeting) -> None:
        self._handle = handle
        self._meeting = meeting

    def __getattr__(self, name: str) -> object:
        return getattr(self._handle, name)

    async def request(self, request: object) -> object:
        if isinstance(request, ListServices | GetInstance):
            await self._meeting.meet()
        return await self._handle.request(request)  # type: ignore[attr-defined]


async def test_a_list_asks_every_member_at_once(cluster: Cluster, tmp_path: Path) -> None:
    # With 20 agents, a list that asked them one after the other took the sum of their 20
    # round trips: each member here answers only once all were asked, so such a list never
    # ends.
    repo = web_repo(tmp_path / "api")
    await cluster.deploy(Deploy("api", web_settings(repo, free_port()), instance="east"))
    meeting = Meeting(2)
    for name in ("east", "west"):
        handle = cluster.members.member(name)
        cluster.members.connect(name, MeetsTheOthers(handle, meeting))  # type: ignore[arg-type]
    await trio.testing.wait_all_tasks_blocked()
    with trio.fail_after(10):
        assert await cluster.listed() == [("api", "east", False)]
        views = await cluster.router.request(ListInstances())
    assert [(v.name, v.state, len(v.services)) for v in views] == [
        ("local", "connected", 0),
        ("east", "connected", 1),
        ("west", "connected", 0),
    ]


async def test_another_router_on_the_same_state_learns_the_placement(
    cluster: Cluster, tmp_path: Path
) -> None:
    # A second control plane on the same state (as two `dployr up` on one database), which
    # east's agent does not dial: what the first one places, the second one knows.
    other = ClusterHandle(cluster.instances["local"].handle, NoMembers(), cluster.state)
    async with trio.open_nursery() as nursery:
        await nursery.start(other.run)
        repo = web_repo(tmp_path / "repo")
        await cluster.deploy(Deploy("api", web_settings(repo, free_port()), instance="east"))
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(Error) as away:
            await other.request(GetService("api"))
        assert away.value.message.startswith("instance east is away")
        nursery.cancel_scope.cancel()
    await cluster.router.request(Stop("api"))


async def test_a_local_service_stays_local_when_an_agent_brings_one_of_that_name(
    cluster: Cluster, tmp_path: Path
) -> None:
    repo = web_repo(tmp_path / "repo")
    await cluster.deploy(Deploy("dup", web_settings(repo, free_port())))
    # East's instance had one of the same name before (deployed on it, not through us).
    east = cluster.instances["east"].handle
    with cluster.router.subscribe_changes() as changes, trio.fail_after(WAIT):
        deployment = await east.request(Deploy("dup", web_settings(repo, free_port())))
        async with contextlib.aclosing(aiter(changes)) as entries:
            async for entry in entries:
                if not isinstance(entry, Gap) and any(
                    isinstance(c, DeploymentChanged)
                    and (c.instance, c.deployment, c.status.value)
                    == ("east", deployment.id, "succeeded")
                    for c in entry
                ):
                    break
    await trio.testing.wait_all_tasks_blocked()  # the router has read east's list
    assert await cluster.listed() == [("dup", "east", False), ("dup", "local", False)]
    assert (await cluster.router.request(GetService("dup"))).instance == "local"
    await cluster.router.request(Stop("dup"))
    await east.request(Stop("dup"))
