"""Container services (issue 16): deploy of a cached image, restart, and the daemon's RSS.

``python -m benchmarks images`` (or ``make bench BENCH=images``). Needs podman, runc,
docker-registry and busybox-static (``make test`` installs them). Everything runs on this
machine: a registry on loopback holds an image built here FROM scratch (busybox's httpd
serving a file on ``$PORT``), so nothing is downloaded.

1. **Deploy of a cached image to serving**, ROUNDS times: ``dployr deploy --image
   REPO@DIGEST`` (the image already in podman's store, ``--min-uptime 0``, no health
   check: the deploy ends once the port accepts), from the CLI's start until the public
   port answers ``GET /version``; against ``podman run`` of the same image by hand (with
   the flags dployr needs here) until its port answers, each deploy followed by a run by
   hand (the machine's load changes over time). Medians, and every figure. Also when the
   CLI exits, the deploy's own time in the daemon (its record's ``created_at`` to
   ``finished_at``), and the same deploy through the REST API (``POST
   /services/{name}/deploy`` from this warm process until the port answers, as for the
   run by hand): ``dployr deploy`` is a Python program whose start-up (~0.2-0.3 s of a
   core) runs beside the deploy, where ``podman run`` is a Go binary.
2. **Restart after the container's process is killed**: SIGKILL the httpd inside the
   container, then time until the public port answers again; RESTARTS times, each after
   the service has been up its min_uptime (so the backoff starts over and the restart is
   immediate). The same for a code service running the same httpd from a folder. Also
   when the daemon's log says the process exited, which splits a restart into the old
   run's end and the new one's start. The httpd killed is found through the daemon's
   own files and processes: the tests' containers run the same httpd under the same
   service names beside it.
3. **Daemon RSS per service**: the daemon's RSS with no service, then with SERVICES
   container services, then (another daemon) with SERVICES code services running the
   same httpd; the extra RSS per service.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

from dployr.engine import podman

ROUNDS = 9
RESTARTS = 10
SERVICES = 5
BUSYBOX = "/bin/busybox"
SERVE = "exec /bin/busybox httpd -f -p $PORT -h /www"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def answers(port: int, timeout: float = 30.0) -> float:
    """Poll ``GET /version`` on the port until it answers; the time it did."""
    deadline = time.perf_counter() + timeout
    request = b"GET /version HTTP/1.0\r\n\r\n"
    while time.perf_counter() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(request)
                if b" 200 " in sock.recv(64):
                    return time.perf_counter()
        except OSError:
            pass
        time.sleep(0.002)
    raise TimeoutError(f"port {port} did not answer within {timeout} s")


def run(*words: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(words, check=False, capture_output=True, env=env, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(words)}: {done.stdout.decode()}{done.stderr.decode()}")
    return done.stdout.decode()


class Daemon:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.env = {**os.environ, "DPLOYR_HOME": str(data)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dployr", "up", "--data-dir", str(data), "--port", "0",
             "--shared-user"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert self.process.stdout is not None
        said = [self.process.stdout.readline().decode() for _ in range(4)]
        self.url = said[0].split("is up: ", 1)[1].split()[0]
        self._http: httpx.Client | None = None

    def api(self, method: str, path: str, body: object = None) -> object:
        """One call of its REST API, as the admin, on a connection kept open (a new
        httpx client costs ~10-20 ms to make: its TLS context)."""
        if self._http is None:
            token = (self.data / "admin-token").read_text().strip()
            self._http = httpx.Client(
                base_url=f"{self.url}/api/v1", timeout=120,
                headers={"Authorization": f"Bearer {token}"},
            )  # fmt: skip
        response = self._http.request(method, path, json=body)
        response.raise_for_status()
        return response.json() if response.content else None

    def cli(self, *args: str) -> str:
        return run(sys.executable, "-m", "dployr", *args, env=self.env)

    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=120)
        assert self.process.stdout is not None
        self.process.stdout.close()


def container_httpd(daemon: Daemon, service: str) -> int:
    """The pid of the httpd in the running container of this daemon's service: the child
    of the container's init, whose pid podman wrote in the release's pidfile. (Found
    through the daemon's own files: other containers on the machine may run the same
    httpd under the same service name.)"""
    for pidfile in daemon.data.glob(f"**/services/{service}/containers/*.pid"):
        try:
            init = psutil.Process(int(pidfile.read_text()))
            for child in init.children():
                if "httpd" in child.cmdline():
                    return child.pid
        except (OSError, ValueError, psutil.Error):
            continue
    raise LookupError(f"no httpd of {service}")


def code_httpd(daemon: Daemon, service: str) -> int:
    """The pid of a code service's httpd: a process of this daemon's."""
    for process in psutil.Process(daemon.process.pid).children(recursive=True):
        try:
            if "httpd" in process.cmdline() and process.environ().get("DPLOYR_SERVICE") == service:
                return process.pid
        except psutil.Error:
            continue
    raise LookupError(f"no httpd of {service}")


def restart_times(
    daemon: Daemon, service: str, port: int, pid_of: Callable[[Daemon, str], int]
) -> tuple[list[float], list[float]]:
    """RESTARTS restarts after SIGKILL: until the port answers again, and until the
    daemon's log says the process exited (its ``exited with code 137`` or ``killed by
    SIGKILL`` line)."""
    times, kills = [], []
    for _ in range(RESTARTS):
        time.sleep(0.5)  # past min_uptime: the next restart is immediate
        pid = pid_of(daemon, service)
        kills.append(time.time())
        killed = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        while True:  # until the old process is gone and a new one answers
            try:
                if pid_of(daemon, service) != pid:
                    break
            except LookupError:
                pass
            time.sleep(0.002)
        times.append(answers(port) - killed)
    logs = daemon.cli("logs", service, "--json", "-n", "500")
    lines = [json.loads(line) for line in logs.splitlines()]
    ended = ("exited with code", "killed by ")
    exits = [line["ts"] for line in lines if line["line"].startswith(ended)]
    seen = []
    for index, kill in enumerate(kills):
        end = kills[index + 1] if index + 1 < len(kills) else float("inf")
        seen += [ts - kill for ts in exits if kill <= ts < end][:1]
    return times, seen


def main() -> None:
    if shutil.which("podman") is None or shutil.which("docker-registry") is None:
        print("images: skipped (apt-get install podman runc docker-registry busybox-static)")
        return
    with tempfile.TemporaryDirectory(prefix="dployr-bench-images-") as tmp:
        _main(Path(tmp))


def _main(tmp: Path) -> None:  # noqa: PLR0915 - one measurement after the other
    context = tmp / "image"
    (context / "www").mkdir(parents=True)
    shutil.copy(BUSYBOX, context / "busybox")
    (context / "www" / "version").write_text("v1\n")
    (context / "Dockerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY www /www\n"
        f'ENTRYPOINT ["/bin/busybox", "sh", "-c", "{SERVE}"]\n'
    )
    config = tmp / "registry.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp / 'registry'}\n"
        "http:\n  addr: 127.0.0.1:15999\nlog:\n  level: error\n"
    )
    registry = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    daemons: list[Daemon] = []
    ref = None
    try:
        local = "localhost/dployr-bench/web:1"
        run(*podman.argv("build", "--quiet", "--tag", local, str(context)))
        repo = "127.0.0.1:15999/dployr-bench/web"
        digest_file = tmp / "digest"
        for _ in range(100):  # the registry may take a moment to listen
            done = subprocess.run(
                podman.argv("push", "--quiet", "--tls-verify=false", "--digestfile",
                            str(digest_file), local, f"{repo}:1"),
                capture_output=True, check=False,
            )  # fmt: skip
            if done.returncode == 0:
                break
            time.sleep(0.05)
        ref = f"{repo}@{digest_file.read_text().strip()}"
        run(*podman.argv("pull", "--quiet", "--tls-verify=false", ref))  # cached from now on

        # 1. deploy of a cached image vs podman run by hand, one after the other
        daemon = Daemon(tmp / "data-deploy")
        daemons.append(daemon)
        deploys, cli_exits, in_daemon, by_hand, by_api = [], [], [], [], []
        limits = podman.run_command(
            name="x", instance="x", service="x", deployment=1, image=ref, command="",
            names=(), data_dir=tmp, grace=10,
        ).split()  # fmt: skip
        ulimits = [word for word in limits if word.startswith("--ulimit=")]
        for index in range(ROUNDS):
            port = free_port()
            start = time.perf_counter()
            cli = subprocess.Popen(
                [sys.executable, "-m", "dployr", "deploy", "--name", f"web{index}", "--image",
                 ref, "--port", str(port), "--min-uptime", "0"],
                env=daemon.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            deploys.append(answers(port) - start)
            assert cli.wait(timeout=120) == 0
            cli_exits.append(time.perf_counter() - start)
            (record,) = json.loads(daemon.cli("deployments", f"web{index}", "--json"))
            in_daemon.append(record["finished_at"] - record["created_at"])
            daemon.cli("delete", f"web{index}", "--yes")

            # The same deploy through the API: no CLI process starting beside it.
            daemon.api("GET", "/services")  # its connection open, as a client's would be
            port = free_port()
            start = time.perf_counter()
            body = {"image": ref, "port": port, "restart": {"min_uptime": 0}}
            daemon.api("POST", f"/services/api{index}/deploy", body)
            by_api.append(answers(port) - start)
            daemon.cli("delete", f"api{index}", "--yes")

            port = free_port()
            name = f"dployr-bench-{os.getpid()}-{index}"
            start = time.perf_counter()
            process = subprocess.Popen(
                podman.argv("run", "--rm", "--init", "--network=host", f"--name={name}",
                            *ulimits, "--env", f"PORT={port}", "--tls-verify=false", ref),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            by_hand.append(answers(port) - start)
            run(*podman.argv("rm", "--force", "--ignore", "--time=0", name))
            process.wait(timeout=60)
        print(f"images: deploy of a cached image until it serves ({ROUNDS} rounds, alternated)")
        for what, values, note in (
            ("dployr deploy --image REPO@DIGEST", deploys, "from the CLI's start"),
            ("  until the CLI exits", cli_exits, ""),
            ("the deploy in the daemon", in_daemon, "its record"),
            ("the deploy through the API", by_api, "POST to serving"),
            ("podman run by hand", by_hand, ""),
        ):
            shown = " ".join(f"{value * 1000:.0f}" for value in values)
            p50 = statistics.median(values) * 1000
            print(f"  {what:<34} p50 {p50:5.0f} ms ({shown}) {note}")
        hand_p50 = statistics.median(by_hand)
        print(
            f"  ratio to podman run: {statistics.median(deploys) / hand_p50:.2f}x with the CLI,"
            f" {statistics.median(in_daemon) / hand_p50:.2f}x in the daemon,"
            f" {statistics.median(by_api) / hand_p50:.2f}x through the API"
        )
        # Each deploy against the run by hand right after it, under the same load.
        paired = [ours / theirs for ours, theirs in zip(in_daemon, by_hand, strict=True)]
        shown = " ".join(f"{ratio:.2f}" for ratio in paired)
        print(f"  in the daemon, round by round: p50 {statistics.median(paired):.2f}x ({shown})")
        paired = [ours / theirs for ours, theirs in zip(by_api, by_hand, strict=True)]
        shown = " ".join(f"{ratio:.2f}" for ratio in paired)
        print(f"  through the API, round by round: p50 {statistics.median(paired):.2f}x ({shown})")

        # 2. restart after the process is killed: container vs code
        port = free_port()
        daemon.cli("deploy", "--name", "web", "--image", ref, "--port", str(port),
                   "--min-uptime", "0.3", "--max-restarts", "20", "--restart-delay", "0",
                   "--restart-window", "600")  # fmt: skip
        container = restart_times(daemon, "web", port, container_httpd)
        daemon.cli("delete", "web", "--yes")
        code_port = free_port()
        folder = tmp / "code"
        shutil.copytree(context / "www", folder / "www")
        daemon.cli("deploy", "--name", "code", "--remote", str(folder), "--run-cmd",
                   f"{BUSYBOX} httpd -f -p $PORT -h www", "--port", str(code_port),
                   "--min-uptime", "0.3", "--max-restarts", "20", "--restart-delay", "0",
                   "--restart-window", "600")  # fmt: skip
        code = restart_times(daemon, "code", code_port, code_httpd)
        daemon.cli("delete", "code", "--yes")
        print(f"images: restart after SIGKILL until it serves again ({RESTARTS} restarts)")
        for what, (values, exits) in (("container service", container), ("code service", code)):
            values.sort()
            p50, top = statistics.median(values), values[-1]
            print(
                f"  {what:<18} p50 {p50 * 1000:6.0f} ms   max {top * 1000:6.0f} ms"
                f"   (its exit in the daemon's log: p50 {statistics.median(exits) * 1000:.0f} ms"
                " after the kill)"
            )
        daemon.stop()
        daemons.remove(daemon)

        # 3. the daemon's RSS per service
        for kind in ("container", "code"):
            daemon = Daemon(tmp / f"data-rss-{kind}")
            daemons.append(daemon)
            time.sleep(1)
            empty = daemon.rss()
            for index in range(SERVICES):
                source = (
                    ("--image", ref)
                    if kind == "container"
                    else (
                        "--remote",
                        str(folder),
                        "--run-cmd",
                        f"{BUSYBOX} httpd -f -p $PORT -h www",
                    )
                )
                daemon.cli("deploy", "--name", f"{kind}{index}", *source,
                           "--port", str(free_port()), "--min-uptime", "0")  # fmt: skip
            time.sleep(1)
            full = daemon.rss()
            per = (full - empty) / SERVICES / 2**20
            print(
                f"images: daemon RSS with {SERVICES} {kind} services: {empty / 2**20:.1f} MiB"
                f" empty, {full / 2**20:.1f} MiB, {per:.2f} MiB per service"
            )
            daemon.stop()
            daemons.remove(daemon)
    finally:
        for daemon in daemons:
            daemon.stop()
        registry.terminate()
        registry.wait(timeout=30)
        pulled = [] if ref is None else [ref]  # what the deploys ran, from the store too
        subprocess.run(
            podman.argv("rmi", "--force", "--ignore", "localhost/dployr-bench/web:1", *pulled),
            capture_output=True, check=False,
        )  # fmt: skip
