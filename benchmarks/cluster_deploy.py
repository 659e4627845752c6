"""A remote instance against the local one, through the CLI as a user runs it (issue 14).

``python -m benchmarks cluster_deploy`` (``make bench BENCH=cluster_deploy``): a control
plane and one agent (``a01``) on this machine; the same app (a Python HTTP server, from a
local folder) deployed as ``web-local`` on the control plane's own instance and as
``web-remote`` on the agent. Then:

* ROUNDS redeploys of each, alternating, each one ``dployr deploy ... --min-uptime 0.3``
  (``--instance a01`` for the remote one) timed from the command's start to its exit
  (the CLI follows the deployment to its end): the remote overhead is the difference of
  the medians, and the median of the rounds' differences (target <= 100 ms);
* STATUS runs of ``dployr service status`` of each, alternating (target <= 300 ms for the
  remote one), and of ``dployr --version``: what the CLI costs doing nothing;
* the same through the REST API alone, without the CLI's start-up: ROUNDS redeploys of
  each (POST until the deployment succeeded), STATUS ``GET /api/v1/services/{name}``.

Takes about 2 minutes.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

from benchmarks import cluster_rig as rig

ROUNDS = 10
STATUS = 30
APP = """\
import http.server
import os

class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello")

http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Hello).serve_forever()
"""


def timed(env: dict[str, str], *args: str) -> float:
    """Seconds ``dployr ARGS`` took, start to exit (it must succeed)."""
    began = time.perf_counter()
    done = subprocess.run(
        [rig.PYTHON, "-m", "dployr", *args], env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"dployr {' '.join(args)}: {done.returncode}: {done.stderr.strip()}")
    return elapsed


def summary(label: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"{label}: median {statistics.median(ms):.0f} ms, p95 {rig.percentile(ms, 0.95):.0f} ms, "
        f"min {min(ms):.0f} ms ({len(ms)} runs)"
    )


def through_api(plane: rig.ControlPlane, source: Path) -> None:
    """The same without the CLI: ROUNDS redeploys of each, alternating, each timed from
    its POST until ``GET .../deployments`` says it succeeded (looked at every 10 ms), and
    STATUS ``GET /api/v1/services/{name}`` of each."""
    body = {"remote": {"url": str(source)}, "run_cmd": f"exec {rig.PYTHON} app.py"}
    ports = {where: plane.get(f"/services/web-{where}")["port"] for where in ("local", "remote")}
    deploys: dict[str, list[float]] = {"local": [], "remote": []}
    gets: dict[str, list[float]] = {"local": [], "remote": []}

    def rounds() -> None:
        for _ in range(ROUNDS):
            for where, times in deploys.items():
                began = time.perf_counter()
                number = plane.deploy(
                    f"web-{where}",
                    body
                    | {"port": ports[where], "restart": {"min_uptime": 0.3}}
                    | {"instance": "a01" if where == "remote" else "local"},
                )["id"]
                while True:
                    (last,) = plane.get(f"/services/web-{where}/deployments", limit=1)
                    if last["id"] == number and last["status"] in ("succeeded", "failed"):
                        assert last["status"] == "succeeded", last
                        break
                    time.sleep(0.01)
                times.append(time.perf_counter() - began)
        for _ in range(STATUS):
            for where, times in gets.items():
                began = time.perf_counter()
                plane.get(f"/services/web-{where}")
                times.append(time.perf_counter() - began)

    _, others = rig.others_cpu(rounds)
    print(f"  {summary('API: redeploy until succeeded, local ', deploys['local'])}")
    print(f"  {summary('API: redeploy until succeeded, remote', deploys['remote'])}")
    paired = statistics.median(
        r - x for r, x in zip(deploys["remote"], deploys["local"], strict=True)
    )
    print(f"    remote overhead: {paired * 1000:+.0f} ms (median of each round's difference)")
    print(f"  {summary('API: GET /services/NAME, local ', gets['local'])}")
    print(f"  {summary('API: GET /services/NAME, remote', gets['remote'])}")
    print(f"    (others took {others:.0f} % of the machine; {rig.load()})")


def measure(root: Path) -> None:
    print(f"cluster deploy and status: a remote instance vs the local one ({rig.load()})")
    source = root / "app"
    source.mkdir()
    (source / "app.py").write_text(APP)
    with rig.cluster(root) as cluster:
        cluster.add_agents(1)
        assert cluster.plane is not None
        env = cluster.plane.env
        common = ("--remote", str(source), "--run-cmd", f"exec {rig.PYTHON} app.py")
        commands = {
            "local": (
                *("deploy", "--name", "web-local", *common, "--port", str(rig.free_port())),
                *("--instance", "local"),
            ),
            "remote": (
                *("deploy", "--name", "web-remote", *common, "--port", str(rig.free_port())),
                *("--instance", "a01"),
            ),
        }
        for command in commands.values():
            timed(env, *command, "--min-uptime", "0.3")  # the first deploy: not measured
        through_api(cluster.plane, source)
        deploys: dict[str, list[float]] = {"local": [], "remote": []}

        def redeploys() -> None:
            for _ in range(ROUNDS):
                for where, command in commands.items():
                    deploys[where].append(timed(env, *command, "--min-uptime", "0.3"))

        _, others = rig.others_cpu(redeploys)
        print(f"  {summary('redeploy, local instance ', deploys['local'])}")
        print(f"  {summary('redeploy, remote instance', deploys['remote'])}")
        overhead = statistics.median(deploys["remote"]) - statistics.median(deploys["local"])
        paired = statistics.median(
            r - local for r, local in zip(deploys["remote"], deploys["local"], strict=True)
        )
        print(
            f"  remote overhead: {overhead * 1000:+.0f} ms (difference of the medians), "
            f"{paired * 1000:+.0f} ms (median of each round's difference); target <= 100 ms "
            f"(others took {others:.0f} % of the machine; {rig.load()})"
        )
        status: dict[str, list[float]] = {"local": [], "remote": [], "version": []}

        def statuses() -> None:
            for _ in range(STATUS):
                status["version"].append(timed(env, "--version"))
                status["local"].append(timed(env, "service", "status", "web-local"))
                status["remote"].append(timed(env, "service", "status", "web-remote"))

        _, others = rig.others_cpu(statuses)
        print(f"  {summary('dployr --version (the CLI alone)      ', status['version'])}")
        print(f"  {summary('dployr service status, local service ', status['local'])}")
        print(f"  {summary('dployr service status, remote service', status['remote'])}")
        print(f"    (target <= 300 ms; others took {others:.0f} % of the machine; {rig.load()})")


def main() -> None:
    began = time.monotonic()
    with rig.workdir("dployr-bench-deploy-") as folder:
        measure(folder)
    print(f"  (cluster_deploy took {time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()
