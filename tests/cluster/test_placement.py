"""Where a deploy naming no instance goes: the instance the service has, else the local
one, else (``dployr up --no-local-services``) the least loaded connected one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dployr.cluster.placement import Load, least_loaded, memory_share
from tests.agent.conftest import agent
from tests.cli.conftest import Daemon, free_port
from tests.helpers import PYTHON, web_repo

loads = st.builds(
    Load,
    name=st.text("abcdef", min_size=1, max_size=4),
    services=st.integers(0, 50),
    memory_used=st.none() | st.floats(0, 1),
    cpu_percent=st.none() | st.floats(0, 100),
)


@given(st.lists(loads, max_size=8, unique_by=lambda load: load.name))
def test_the_least_loaded_has_the_fewest_services_then_the_least_memory(
    candidates: list[Load],
) -> None:
    chosen = least_loaded(candidates)
    if not candidates:
        assert chosen is None
        return
    (best,) = [c for c in candidates if c.name == chosen]
    assert best.services == min(c.services for c in candidates)
    fewest = [c for c in candidates if c.services == best.services]
    assert memory(best) == min(memory(c) for c in fewest)


def memory(load: Load) -> float:
    """The share of memory in use that placement goes by: an unknown one counts as full."""
    return 1.0 if load.memory_used is None else load.memory_used


def test_an_instance_without_a_sample_counts_as_full_and_ties_go_by_name() -> None:
    assert least_loaded([Load("a", 1), Load("b", 1, 0.9, 99.0)]) == "b"
    assert least_loaded([Load("b", 0, 0.5, 10.0), Load("a", 0, 0.5, 10.0)]) == "a"
    assert least_loaded([Load("a", 0, 0.5, 80.0), Load("b", 0, 0.5, 10.0)]) == "b"
    assert least_loaded([Load("a", 2, 0.1, 1.0), Load("b", 1, 0.9, 99.0)]) == "b"
    assert memory_share(None, 100) is None
    assert memory_share(50, 0) is None
    assert memory_share(25, 100) == 0.25


@pytest.mark.slow
async def test_a_control_plane_without_local_services_places_new_ones_on_the_least_loaded(
    tmp_path: Path,
) -> None:
    plane = await Daemon.start(tmp_path / "plane", "--no-local-services")
    repo = web_repo(tmp_path / "repo")

    def deploy_args(name: str, *extra: str) -> tuple[str, ...]:
        return (
            "deploy", "--name", name, "--remote", str(repo), "--run-cmd", f"{PYTHON} app.py",
            "--port", str(free_port()), "--min-uptime", "0.3", *extra,
        )  # fmt: skip

    async def deploy(name: str, *extra: str) -> None:
        await plane.ok(*deploy_args(name, *extra))

    async def where() -> dict[str, str]:
        listed = json.loads(await plane.ok("list", "--json"))
        return {row["name"]: row["instance"] for row in listed}

    try:
        shown = await plane.ok("instances")
        assert "connected; takes no new services" in shown, shown
        nowhere = await plane.cli(*deploy_args("a"))
        assert "no instance to run it: " in nowhere.one_line_error()
        named = await plane.cli(*deploy_args("a", "--instance", "local"))
        assert "takes no new services" in named.one_line_error()

        tokens = {}
        for name in ("east", "west"):
            added = await plane.cli("instances", "add", name)
            assert added.code == 0, added
            tokens[name] = added.out.strip()
        async with (
            agent(tmp_path / "east", "--join", plane.url, "--token", tokens["east"]) as east,
            agent(tmp_path / "west", "--join", plane.url, "--token", tokens["west"]) as west,
        ):
            await east.wait_for("connected to the control plane")
            await west.wait_for("connected to the control plane")
            await deploy("a")
            first = (await where())["a"]
            assert first in ("east", "west")
            other = "west" if first == "east" else "east"
            await deploy("b")  # the other one has fewer services now
            assert await where() == {"a": first, "b": other}
            await deploy("c", "--instance", first)  # named: where it is told
            await deploy("b")  # a service keeps its instance, however loaded
            assert await where() == {"a": first, "b": other, "c": first}
            await deploy("d")
            assert (await where())["d"] == other
            moved = await plane.cli(*deploy_args("a", "--instance", "local"))
            assert "takes no new services" in moved.one_line_error()
            assert (await where())["a"] == first
    finally:
        code, _ = await plane.stop()
        assert code == 0
