"""A control plane restarted under 20 connected agents (issue 14).

``python -m benchmarks cluster_restart`` (``make bench BENCH=cluster_restart``): the fleet
of :mod:`benchmarks.cluster_fleet` (AGENTS agents x SERVICES ``sleep`` services), then
ROUNDS restarts of the control plane, stopped cleanly (SIGTERM) and then killed
(SIGKILL), each started again at once. For each: the seconds from its start until every
agent is connected again, and until the cluster is reconciled: ``GET /api/v1/services``
shows every service known (not stale), running, with the pid and restart count it had
before (target: both within 10 s); and that no service restarted (the ``sleep`` processes
below the agents are the same, started at the same time). ``DPLOYR_BENCH_AGENTS`` and
``DPLOYR_BENCH_SERVICES`` change the counts (20 and 50). Takes 3-5 minutes on 2 cores.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from benchmarks import cluster_rig as rig
from benchmarks.cluster_fleet import AGENTS, POLL, SERVICES, SLEEP, fleet

ROUNDS = 3
TIMEOUT = 120.0


def snapshot(plane: rig.ControlPlane) -> dict[str, tuple[Any, ...]]:
    """Each service's (status, pid, restarts, stale) as the API shows it."""
    return {
        s["name"]: (s["status"], s["pid"], s["restarts"], s.get("stale", False))
        for s in plane.services()
    }


def restart(cluster: rig.Cluster, how: signal.Signals, wanted: dict[str, Any]) -> dict[str, float]:
    """Stop the control plane with ``how``, start it again: seconds to each milestone."""
    assert cluster.plane is not None
    if how == signal.SIGKILL:
        cluster.plane.process.kill()
        cluster.plane.process.wait()
        cluster.plane.api.close()
        cluster.plane = None
    else:
        cluster.stop_plane()
    plane = cluster.start_plane()
    started = plane.started_at
    milestones = {"api": plane.api_up_at - started}
    names = {agent.name for agent in cluster.agents}
    deadline = time.monotonic() + TIMEOUT
    while "reconciled" not in milestones or "connected" not in milestones:
        if time.monotonic() > deadline:
            raise TimeoutError(f"after {TIMEOUT:g} s: {milestones}")
        # Each milestone is the start of the first look that saw it.
        looked = time.monotonic()
        if "connected" not in milestones and names <= rig.connected(plane.instances()):
            milestones["connected"] = looked - started
        looked = time.monotonic()
        if "reconciled" not in milestones and snapshot(plane) == wanted:
            milestones["reconciled"] = looked - started
        time.sleep(POLL)
    return milestones


def measure(root: Path, agents: int = AGENTS, services: int = SERVICES) -> None:
    print(
        f"cluster restart: the control plane restarted under {agents} agents x {services} "
        f"services ({rig.load()})"
    )
    cluster = fleet(root, agents, services)
    try:
        assert cluster.plane is not None
        wanted = snapshot(cluster.plane)
        assert all(state[0] == "running" and not state[3] for state in wanted.values())
        before = rig.sleepers_below(cluster.agents, SLEEP)
        assert len(before) == agents * services
        for how in (signal.SIGTERM, signal.SIGKILL):
            for round_ in range(1, ROUNDS + 1):
                figures, others = rig.others_cpu(
                    lambda how=how: restart(cluster, how, wanted)  # type: ignore[misc]
                )
                after = rig.sleepers_below(cluster.agents, SLEEP)
                restarted = len(set(before.items()) - set(after.items()))
                print(
                    f"  {how.name} {round_}: all {agents} agents connected "
                    f"{figures['connected']:.2f} s after the control plane's start, "
                    f"reconciled (every service known, same pid and restarts) at "
                    f"{figures['reconciled']:.2f} s (target <= 10 s); API up at "
                    f"{figures['api']:.2f} s; {restarted} service restarts (target 0) "
                    f"(others took {others:.0f} % of the machine; {rig.load()})"
                )
    finally:
        cluster.stop()


def main() -> None:
    began = time.monotonic()
    with rig.workdir("dployr-bench-restart-") as folder:
        measure(folder)
    print(f"  (cluster_restart took {time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()
