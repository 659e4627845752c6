"""Following the log of a remote service writing 10,000 lines/s (issue 14).

``python -m benchmarks cluster_logs`` (``make bench BENCH=cluster_logs``): a control plane
and one agent (``a01``) on this machine, and the same logger deployed on each instance
(``logger-local``, ``logger-remote``). A logger waits for its go file, then writes
10,000 lines a second for SECONDS seconds (in 1 ms ticks), each line starting with the
``time.time()`` it was written at and its number. A follower process
(:mod:`benchmarks.cluster_follow_client`) follows the service's log through the control
plane's feed (``/api/v1/services/{name}/logs/stream?batch=1``, as ``dployr logs -f``
does), and checks that every line of the round came, once and in order; the delays are
its receive time minus each line's written time. ROUNDS rounds, local then remote in
each: the remote follow's p99 minus the local one's is what the agent's hop adds
(target <= 50 ms). Takes about 2 minutes.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks import cluster_rig as rig

RATE = 10_000
SECONDS = 10.0
ROUNDS = 3
TOTAL = int(RATE * SECONDS)
LOGGER = """\
import os
import sys
import time

go, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
total = int(rate * seconds)
pad = "x" * 40
write, flush = sys.stdout.write, sys.stdout.flush
round_ = 0
while True:
    round_ += 1
    print(f"ready for round {round_}", flush=True)
    while not os.path.exists(f"{go}.{round_}"):
        time.sleep(0.005)
    start = time.monotonic()
    sent = 0
    while sent < total:
        due = min(total, int((time.monotonic() - start) * rate))
        if due > sent:
            now = time.time()
            write("".join(f"{now:.6f} {round_} {n} {pad}\\n" for n in range(sent, due)))
            flush()
            sent = due
        time.sleep(0.001)
"""


def follow_round(
    plane: rig.ControlPlane, service: str, go: Path, round_: int, watched: list[int]
) -> dict[str, Any]:
    """One round of ``service``'s logger, followed; the follower's figures, and the CPU
    of the ``watched`` processes meanwhile (% of a core each)."""
    ws = plane.url.replace("http://", "ws://")
    url = f"{ws}/api/v1/services/{service}/logs/stream?batch=1&tail=1"
    client = subprocess.Popen(
        [
            *(rig.PYTHON, "-m", "benchmarks.cluster_follow_client", url, plane.token),
            *(str(round_), str(TOTAL), str(SECONDS + 60)),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert client.stdout is not None
    if client.stdout.readline().strip() != "connected":
        raise RuntimeError(f"the follower of {service} did not connect")
    time.sleep(1.0)  # the subscription is open end to end: what comes now is live
    meters = [psutil.Process(pid) for pid in watched]
    before = [sum(p.cpu_times()[:2]) for p in meters]
    began = time.monotonic()
    at = time.strftime("%H:%M:%S", time.gmtime())
    Path(f"{go}.{round_}").touch()
    out, _ = client.communicate(timeout=SECONDS + 120)
    elapsed = time.monotonic() - began
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    figures["at"] = at
    figures["cpu"] = [
        (sum(p.cpu_times()[:2]) - b) / elapsed * 100 for p, b in zip(meters, before, strict=True)
    ]
    return figures


def describe(figures: dict[str, Any]) -> str:
    lost = TOTAL - figures["distinct"]
    delivered = "all lines delivered" if lost == 0 else f"{lost:,} LINES MISSING"
    return (
        f"at {figures['at']} UTC: delay p50 {figures['p50']:.1f} ms, "
        f"p99 {figures['p99']:.1f} ms, max "
        f"{figures['max']:.1f} ms; {delivered} ({figures['distinct']:,} of {TOTAL:,}; "
        f"{figures['duplicates']} duplicates, {figures['out_of_order']} out of order, "
        f"{figures['gaps']} gaps); median delay by tenth of the round: "
        + " ".join(f"{value:.0f}" for value in figures["tenths"])
        + " ms"
    )


def measure(root: Path) -> None:
    print(f"cluster logs: following a service writing {RATE:,} lines/s ({rig.load()})")
    source = root / "logger"
    source.mkdir()
    (source / "app.py").write_text(LOGGER)
    with rig.cluster(root) as cluster:
        cluster.add_agents(1)
        plane = cluster.plane
        assert plane is not None
        go = {"local": root / "go-local", "remote": root / "go-remote"}
        for where in ("local", "remote"):
            body: dict[str, Any] = {
                "remote": {"url": str(source)},
                "run_cmd": f"exec {rig.PYTHON} app.py {go[where]} {RATE} {SECONDS}",
                "restart": {"min_uptime": 0.3},
                "instance": "a01" if where == "remote" else "local",
            }
            plane.deploy(f"logger-{where}", body)
        rig.wait_all_running(plane, 2)
        agent = cluster.agents[0].pid
        added = []
        for round_ in range(1, ROUNDS + 1):
            local = follow_round(plane, "logger-local", go["local"], round_, [plane.pid])
            remote, others = rig.others_cpu(
                lambda round_=round_: follow_round(  # type: ignore[misc]
                    plane, "logger-remote", go["remote"], round_, [plane.pid, agent]
                )
            )
            added.append(remote["p99"] - local["p99"])
            print(
                f"  round {round_}, local follow:  {describe(local)}; control plane CPU "
                f"{local['cpu'][0]:.0f} %"
            )
            print(
                f"  round {round_}, remote follow: {describe(remote)}; control plane CPU "
                f"{remote['cpu'][0]:.0f} %, agent CPU {remote['cpu'][1]:.0f} % "
                f"(others took {others:.0f} % of the machine; {rig.load()})"
            )
        print(
            "  p99 added by the remote hop, by round: "
            + ", ".join(f"{value:+.1f} ms" for value in added)
            + " (target <= 50 ms)"
        )


def main() -> None:
    began = time.monotonic()
    with rig.workdir("dployr-bench-logs-") as folder:
        measure(folder)
    print(f"  (cluster_logs took {time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()
