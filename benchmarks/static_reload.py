"""Whether one Caddy per static site, reloaded at each deploy, could own the public port.

``python -m benchmarks static_reload`` (or ``make bench BENCH=static_reload``). The idea
(issue 15, point 1): one Caddy per static service on the service's port, its admin API
on a unix socket, each deploy loading the new release's configuration (``POST /load``),
so that no proxy stands between the visitors and Caddy. It holds only if a load keeps the
listening socket and lets the old server's connections finish: a switch must lose no
request and never mix versions on one connection.

Caddy (Debian's, run by hand) serves ``v1/`` then ``v2/`` alternately, LOADS times, one
load every PAUSE s, while VISITORS threads each make visits: ``/version.txt``,
``/page.txt`` (10 KB of the version's letter), ``/version.txt`` again, on one
connection (keep-alive), or on a new connection each (to tell a listener's lost queue
from closed idle connections). It prints the listening socket (its inode) before and
after a load, the visits, the failed requests and the visits that mixed versions.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import proxy

LOADS = 20
PAUSE = 0.2
VISITORS = 4


def config(root: Path, port: int, admin: Path) -> dict[str, Any]:
    """Caddy serving ``root`` on ``port``, its admin API on the unix socket ``admin``."""
    return {
        "admin": {"listen": f"unix/{admin}", "config": {"persist": False}},
        "logging": {"logs": {"default": {"level": "ERROR"}}},
        "apps": {
            "http": {
                "grace_period": "5s",
                "servers": {
                    "site": {
                        "listen": [f"127.0.0.1:{port}"],
                        "routes": [{"handle": [{"handler": "file_server", "root": str(root)}]}],
                        "automatic_https": {"disable": True},
                    }
                },
            }
        },
    }


class _Admin(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(self.path))


def load(admin: Path, body: dict[str, Any]) -> None:
    """``POST /load`` on the admin socket (its Host must be empty: a socket has none)."""
    data = json.dumps(body).encode()
    connection = _Admin(admin)
    connection.putrequest("POST", "/load", skip_host=True)
    for name, value in (("Host", ""), ("Content-Type", "application/json")):
        connection.putheader(name, value)
    connection.putheader("Content-Length", str(len(data)))
    connection.endheaders(data)
    reply = connection.getresponse()
    if reply.status != 200:
        raise SystemExit(f"caddy refused the load: {reply.status} {reply.read()!r}")
    connection.close()


def listening(port: int) -> list[str]:
    """The inodes of the sockets listening on ``port`` (``ss``)."""
    out = subprocess.run(
        ["ss", "-Hltne", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return [word.split(":", 1)[1] for word in out.split() if word.startswith("ino:")]


class Visits:
    """Visitors making visits until told to stop; what they met."""

    def __init__(self, port: int, *, keep_alive: bool) -> None:
        self.port = port
        self.keep_alive = keep_alive
        self.stop = threading.Event()
        self.visits = 0
        self.errors: Counter[str] = Counter()
        self.mixed: list[tuple[bytes, ...]] = []
        self.lock = threading.Lock()

    def _get(self, connection: http.client.HTTPConnection | None, path: str) -> bytes:
        if connection is None:  # a new connection for this request
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            connection.request("GET", path, headers={"Connection": "close"})
            body = connection.getresponse().read()
            connection.close()
            return body
        connection.request("GET", path)
        return connection.getresponse().read()

    def visitor(self) -> None:
        while not self.stop.is_set():
            connection = None
            if self.keep_alive:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                first = self._get(connection, "/version.txt").strip()
                page = self._get(connection, "/page.txt")
                last = self._get(connection, "/version.txt").strip()
            except (OSError, http.client.HTTPException) as error:
                with self.lock:
                    self.errors[type(error).__name__] += 1
                continue
            finally:
                if connection is not None:
                    connection.close()
            with self.lock:
                self.visits += 1
                if not (first == last and page[:1] == first[-1:]):
                    self.mixed.append((first, page[:1], last))


def run(caddy_dir: Path, port: int, admin: Path, *, keep_alive: bool) -> None:
    visits = Visits(port, keep_alive=keep_alive)
    threads = [threading.Thread(target=visits.visitor) for _ in range(VISITORS)]
    for thread in threads:
        thread.start()
    before = listening(port)
    for number in range(LOADS):
        time.sleep(PAUSE)
        load(admin, config(caddy_dir / ("v2" if number % 2 == 0 else "v1"), port, admin))
        if number == 0:
            print(f"  listening socket before a load: inode {before}, after: {listening(port)}")
    time.sleep(PAUSE)
    visits.stop.set()
    for thread in threads:
        thread.join()
    mode = "one connection per visit" if keep_alive else "a new connection per request"
    errors = ", ".join(f"{count} {name}" for name, count in visits.errors.items()) or "none"
    # (With a new connection per request, a visit across a load is two versions anyway.)
    mixed = f"; visits that mixed versions: {len(visits.mixed)}" if keep_alive else ""
    print(f"  {mode}: {LOADS} loads, {visits.visits} visits; failed requests: {errors}{mixed}")


def main() -> None:
    if shutil.which("caddy") is None:
        raise SystemExit("the static_reload benchmark needs Debian's caddy (make bench)")
    command = ["caddy", "version"]
    version = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    print(f"static_reload: Caddy {version.split()[0]}, reloaded through its admin API")
    with tempfile.TemporaryDirectory(prefix="dployr-bench-reload-") as tmp:
        root = Path(tmp)
        for name in ("v1", "v2"):
            (root / name).mkdir()
            (root / name / "version.txt").write_text(f"{name}\n")
            (root / name / "page.txt").write_text(name[-1] * 10_240)
        port, admin = proxy.free_port(), root / "admin.sock"
        (root / "caddy.json").write_text(json.dumps(config(root / "v1", port, admin)))
        caddy = subprocess.Popen(
            ["caddy", "run", "--config", str(root / "caddy.json")],
            env={"PATH": "/usr/bin:/bin", "HOME": str(root)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            proxy.wait_listening(port)
            for keep_alive in (True, False):
                run(root, port, admin, keep_alive=keep_alive)
        finally:
            caddy.terminate()
            caddy.wait(10)
