"""A cluster of 20 agents x 50 services on this machine (issue 14).

``python -m benchmarks cluster_fleet`` (``make bench BENCH=cluster_fleet``): a control
plane (``dployr up``) and AGENTS ``dployr agent`` processes, each on a data dir of its own,
each running SERVICES ``sleep 100000`` services deployed through the control plane's API
(``POST /api/v1/services/{name}/deploy`` with ``"instance"``, from an empty local folder).
Once every service runs, it measures:

* the control plane's RSS, and its CPU over IDLE seconds of idling (the threads'
  ``schedstat``; the agents send their metrics every 5 s);
* then, ROUNDS times: the control plane stopped (SIGTERM) and started again; the time
  from its start until ``GET /api/v1/services`` shows every service known (not stale:
  its agent has answered) and running (target <= 2 s), when its API first answered, and
  when every agent was connected again.

``DPLOYR_BENCH_AGENTS`` and ``DPLOYR_BENCH_SERVICES`` change the counts (20 and 50).
Takes 3-5 minutes on 2 cores.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks import cluster_rig as rig

AGENTS = int(os.environ.get("DPLOYR_BENCH_AGENTS", "20"))
SERVICES = int(os.environ.get("DPLOYR_BENCH_SERVICES", "50"))
IDLE = 30.0
SETTLE = 10.0
ROUNDS = 3
SLEEP = "100000"
POLL = 0.1
"""Seconds between two looks at the API while the control plane starts: each look lists
1,000 services (twice: the services, the instances), work the control plane would
otherwise spend on the agents."""


def fleet(root: Path, agents: int, services: int) -> rig.Cluster:
    """A started cluster: ``agents`` agents, each with ``services`` running services."""
    cluster = rig.Cluster(root)
    plane = cluster.start_plane()
    source = root / "empty"
    source.mkdir()
    began = time.monotonic()
    cluster.add_agents(agents)
    joined = time.monotonic() - began
    bodies: dict[str, dict[str, Any]] = {}
    for agent in cluster.agents:
        for number in range(services):
            bodies[f"{agent.name}-s{number:02d}"] = {
                "remote": {"url": str(source)},
                "run_cmd": f"sleep {SLEEP}",
                "instance": agent.name,
                "restart": {"min_uptime": 0.3},
            }
    began = time.monotonic()
    rig.deploy_many(plane, bodies)
    rig.wait_all_running(plane, agents * services)
    print(
        f"  set up: {agents} agents joined and connected in {joined:.1f} s; "
        f"{agents * services} services deployed and running in {time.monotonic() - began:.1f} s"
    )
    return cluster


def all_known(cluster: rig.Cluster, count: int, timeout: float = 120) -> dict[str, float]:
    """Restart the control plane; the seconds from its start to each milestone."""
    cluster.stop_plane()
    plane = cluster.start_plane()
    started = plane.started_at
    api = plane.api_up_at - started
    milestones: dict[str, float] = {"api": api}
    deadline = time.monotonic() + timeout
    while "known" not in milestones or "connected" not in milestones:
        if time.monotonic() > deadline:
            raise TimeoutError(f"after {timeout:g} s: {milestones}")
        # Each milestone is the start of the first look that saw it.
        if "known" not in milestones:
            looked = time.monotonic()
            services = plane.services()
            if len(services) >= count and all(rig.known_running(s) for s in services):
                milestones["known"] = looked - started
        if "connected" not in milestones:
            looked = time.monotonic()
            wanted = {agent.name for agent in cluster.agents}
            if wanted <= rig.connected(plane.instances()):
                milestones["connected"] = looked - started
        time.sleep(POLL)
    return milestones


def measure(root: Path, agents: int = AGENTS, services: int = SERVICES) -> None:
    count = agents * services
    print(f"cluster fleet: {agents} agents x {services} services ({rig.load()})")
    cluster = fleet(root, agents, services)
    try:
        assert cluster.plane is not None
        time.sleep(SETTLE)
        pid = cluster.plane.pid
        agent_rss = [rig.rss_mb(agent.pid) for agent in cluster.agents]
        cpu, others = rig.others_cpu(lambda: rig.idle_cpu(pid, IDLE))
        print(
            f"  control plane: RSS {rig.rss_mb(pid):.1f} MB, idle CPU {cpu:.2f} % of a core "
            f"over {IDLE:g} s (other processes took {others:.0f} % of the machine "
            f"meanwhile; {rig.load()})"
        )
        print(
            f"  agents: RSS {statistics.mean(agent_rss):.1f} MB on average "
            f"({min(agent_rss):.1f}-{max(agent_rss):.1f} MB)"
        )
        for path, look in (
            ("services", cluster.plane.services),
            ("instances", cluster.plane.instances),
        ):
            lists = []
            for _ in range(10):
                began = time.perf_counter()
                look()
                lists.append(time.perf_counter() - began)
            print(
                f"  GET /api/v1/{path} ({agents} agents, {count:,} services): median "
                f"{statistics.median(lists) * 1000:.0f} ms, max {max(lists) * 1000:.0f} ms "
                "(10 runs)"
            )
        before = rig.sleepers_below(cluster.agents, SLEEP)
        assert len(before) == count, f"{len(before)} services run, not {count}"
        for round_ in range(1, ROUNDS + 1):
            figures, others = rig.others_cpu(lambda: all_known(cluster, count))
            after = rig.sleepers_below(cluster.agents, SLEEP)
            kept = "pids unchanged" if after == before else "PIDS CHANGED"
            print(
                f"  control plane restart {round_}: every service known through the API "
                f"{figures['known']:.2f} s after its start (target <= 2 s); API up at "
                f"{figures['api']:.2f} s, all {agents} agents connected at "
                f"{figures['connected']:.2f} s; {kept} (others took {others:.0f} % of the "
                f"machine; {rig.load()})"
            )
    finally:
        cluster.stop()


def main() -> None:
    began = time.monotonic()
    with rig.workdir("dployr-bench-fleet-") as folder:
        measure(folder)
    print(f"  (cluster_fleet took {time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()
