"""Static sites (issue 15): a 10 KB file through dployr's static service vs Caddy by hand.

``python -m benchmarks static`` (or ``make bench BENCH=static``). A real ``dployr up`` on
loopback deploys a plain folder as a static site (``type = "static"``: Caddy, started by
dployr, serving the release behind the service's public port). Caddy is also started by
hand on the same folder, as a user would without dployr (``caddy file-server --root
dist``). ``wrk -t1 -c16 -d10s`` loads ``/file.txt`` (10,240 bytes) through:

- the service's public port (dployr's proxy, then the release's Caddy);
- the release's Caddy straight on its private port (its ``$PORT``): dployr's configuration
  without the proxy (its access log still read by dployr into the service's history);
- the release's configuration run by hand, its access log thrown away;
- Caddy by hand (``caddy file-server``: no access log, no rules).

with keep-alive and with a new connection per request, ROUNDS times each, alternating;
the best run of each is kept. Target: the service's port keeps >= 95 % of Caddy by hand.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from benchmarks import proxy
from benchmarks.engine_peers import Dployr, sweep

ROUNDS = 3
FILE_SIZE = 10_240
TARGET = 0.95

SERVICE = "dployr static service"
RELEASE = "its Caddy on $PORT"
CONFIG = "its config by hand, no log"
BY_HAND = "caddy file-server by hand"


def main() -> None:
    if shutil.which("caddy") is None or shutil.which("wrk") is None:
        raise SystemExit("the static benchmark needs Debian's caddy and wrk (make bench)")
    with tempfile.TemporaryDirectory(prefix="dployr-bench-static-") as tmp:
        root = Path(tmp)
        site = root / "site"
        (site / "dist").mkdir(parents=True)
        (site / "dist" / "index.html").write_text("<!doctype html><title>bench</title>\n")
        (site / "dist" / "file.txt").write_bytes(bytes(65 + i % 26 for i in range(FILE_SIZE)))
        daemon = Dployr(root / "data")
        hands: list[subprocess.Popen[bytes]] = []
        try:
            port = proxy.free_port()
            body = {
                "remote": {"url": str(site)},
                "type": "static",
                "port": port,
                "restart": {"min_uptime": 0.3},
            }
            seconds = proxy.deploy(daemon, "site", body)
            print(f"static: deployed in {seconds:.2f} s")
            _, private = proxy.private_port(daemon, "site")
            by_hand, config = proxy.free_port(), proxy.free_port()
            release = root / "data" / "services" / "site" / "releases" / "1"
            env = {"PATH": "/usr/bin:/bin", "HOME": str(root / "home")}
            for command, cwd, port_env in [
                (
                    ["caddy", "file-server", "--root", "dist", "--listen", f"127.0.0.1:{by_hand}"],
                    site,
                    {},
                ),
                (
                    ["caddy", "run", "--config", ".dployr/caddy.json"],
                    release,
                    {"PORT": str(config)},
                ),
            ]:
                hands.append(
                    subprocess.Popen(
                        command,
                        cwd=cwd,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        env={**env, **port_env},
                    )
                )
            proxy.wait_listening(by_hand)
            proxy.wait_listening(config)
            compare(
                {
                    SERVICE: proxy.Route(f"http://127.0.0.1:{port}/file.txt", daemon.pid),
                    RELEASE: proxy.Route(f"http://127.0.0.1:{private}/file.txt"),
                    CONFIG: proxy.Route(f"http://127.0.0.1:{config}/file.txt"),
                    BY_HAND: proxy.Route(f"http://127.0.0.1:{by_hand}/file.txt"),
                }
            )
        finally:
            for hand in hands:
                hand.terminate()
                hand.wait(10)
            daemon.stop()
            sweep(root)


def compare(paths: dict[str, proxy.Route]) -> None:
    """Alternate wrk runs over every path in both connection modes; print the figures."""
    tool = " ".join(proxy.wrk_command("URL", close=False, connections=16, duration=10))
    print(f"static: {tool} on a {FILE_SIZE:,}-byte file, best of {ROUNDS}")
    for close in (False, True):
        mode = "new connection per request" if close else "keep-alive"
        runs: dict[str, list[proxy.WrkResult]] = {path: [] for path in paths}
        for _ in range(ROUNDS):
            for path, way in paths.items():
                runs[path].append(proxy.wrk(way.url, close=close))
        best = {path: max(results, key=lambda r: r.rate) for path, results in runs.items()}
        ratio = best[SERVICE].rate / best[BY_HAND].rate
        met = "met" if ratio >= TARGET else "NOT met"
        print(f"  {mode}: the service keeps {ratio:.0%} of Caddy by hand (target 95 %: {met})")
        for path, results in runs.items():
            share = best[path].rate / best[BY_HAND].rate
            print(
                f"    {path:<26} best {best[path].rate:>8,.0f} req/s ({share:>4.0%}) "
                f"p99 {best[path].p99_ms:6.2f} ms; runs: "
                + "; ".join(result.brief() for result in results)
            )
            for result in results:
                if result.failed:
                    print(f"      ! {result.failed} failed requests: {result}")
