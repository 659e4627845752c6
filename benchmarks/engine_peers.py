"""The process managers the engine benchmark compares: dployr's daemon and its peers.

Each manager runs a set of :class:`Program` values the same way: the same command, working
dir and log files, restarted (or not) on exit. The peers are configured from files written
to a temporary folder at run time; none of their code is part of dployr.

* **dployr**: ``python -m dployr up`` on a data dir, programs deployed through the REST API
  (``POST /api/v1/services/{name}/deploy``) from an empty local folder.
* **supervisord 4.3**: ``supervisord -n -c supervisord.conf``, one ``[program:x]`` each.
* **circus 0.19**: ``circusd circus.ini``, one ``[watcher:x]`` each, output to a FileStream.
* **PM2 7**: ``pm2 start ecosystem.json`` with its own ``PM2_HOME``; the God daemon is the
  process measured.

Where the peers come from (none is installed with dployr)::

    python3 -m venv /tmp/peers/venv
    /tmp/peers/venv/bin/pip install 'supervisor==4.3.*' 'circus==0.19.*'
    cd /tmp/pm2 && npm install pm2@7

``DPLOYR_BENCH_PEERS`` (a venv's ``bin`` folder) and ``DPLOYR_BENCH_PM2`` (the ``pm2``
executable) point elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import attrs
import httpx
import psutil

PEERS_BIN = Path(os.environ.get("DPLOYR_BENCH_PEERS", "/tmp/peers/venv/bin"))
PM2 = Path(os.environ.get("DPLOYR_BENCH_PM2", "/tmp/pm2/node_modules/.bin/pm2"))
START_TIMEOUT = 60.0


class NotInstalled(Exception):
    """A peer is not installed here: its figures are skipped."""


@attrs.frozen
class Program:
    """One program to supervise: a shell command, its folder, and where its output goes."""

    name: str
    command: str
    """Run with ``/bin/sh -c`` by every manager."""
    cwd: Path
    restart: bool = True
    """Restart it whenever it exits (the restart-latency and crash-loop workloads)."""
    logs: Path | None = None
    """The folder of its log files, ``<name>.out`` and ``<name>.err`` (peers only)."""

    @property
    def argv(self) -> list[str]:
        return ["/bin/sh", "-c", self.command]

    def out(self) -> Path:
        assert self.logs is not None
        return self.logs / f"{self.name}.out"

    def err(self) -> Path:
        assert self.logs is not None
        return self.logs / f"{self.name}.err"


class Manager(Protocol):
    """A running process manager."""

    name: str

    @property
    def pid(self) -> int:
        """The manager process whose CPU and memory are measured."""
        ...

    def stop(self) -> None:
        """Stop it and every program it runs."""
        ...

    def state(self, program: str) -> str:
        """What the manager says about a program, in its own words."""
        ...


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc, in one pass)."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as file:
                stat = file.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split(maxsplit=2)[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def sleepers(pid: int, argument: str = "100000") -> list[int]:
    """The ``sleep <argument>`` processes below ``pid``."""
    wanted = f"sleep\0{argument}\0".encode()
    found = []
    for child in descendants(pid):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as file:
                if file.read() == wanted:
                    found.append(child)
        except OSError:
            continue
    return found


def wait_for(check: Any, timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll ``check()`` every ``interval`` s until it returns something true; return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout:g} s")
        time.sleep(interval)


def _terminate(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- dployr ------------------------------------------------------------------------------


class Dployr:
    """``dployr up`` on a data dir, driven through its REST API."""

    name = "dployr"

    def __init__(self, data_dir: Path, *, log: Path | None = None) -> None:
        self.data_dir = data_dir
        self.started_at = time.time()
        """Wall-clock time just before the daemon process was spawned."""
        out = open(log or data_dir.with_suffix(".log"), "ab")  # noqa: SIM115 - kept by Popen
        data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dployr",
                "up",
                "--data-dir",
                str(data_dir),
                "--port",
                "0",
                "--service-host",
                "127.0.0.1",
                "--shared-user",  # as root, a service user could not reach this interpreter
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        out.close()
        endpoint = data_dir / "daemon.json"
        wait_for(
            lambda: endpoint.exists() or self.process.poll() is not None,
            START_TIMEOUT,
            "the daemon to start",
            interval=0.005,
        )
        if self.process.poll() is not None:
            raise RuntimeError(f"dployr up exited with {self.process.returncode}")
        self.api_up_at = time.time()
        """When its endpoint file appeared (the API answers from then on)."""
        url = json.loads(endpoint.read_text())["url"]
        token = (data_dir / "admin-token").read_text().strip()
        self.api = httpx.Client(
            base_url=f"{url}/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def deploy(self, program: Program, source: Path) -> None:
        """Create and deploy a service running ``program`` (answers once the deploy began)."""
        reply = self.api.post(
            f"/services/{program.name}/deploy",
            json={"remote": {"url": str(source)}, "run_cmd": program.command},
        )
        reply.raise_for_status()

    def service(self, name: str) -> dict[str, Any]:
        reply = self.api.get(f"/services/{name}")
        reply.raise_for_status()
        return reply.json()  # type: ignore[no-any-return]

    def services(self) -> list[dict[str, Any]]:
        reply = self.api.get("/services")
        reply.raise_for_status()
        return reply.json()  # type: ignore[no-any-return]

    def logs(self, name: str, **query: object) -> dict[str, Any]:
        reply = self.api.get(f"/services/{name}/logs", params=query)  # type: ignore[arg-type]
        reply.raise_for_status()
        return reply.json()  # type: ignore[no-any-return]

    def state(self, program: str) -> str:
        info = self.service(program)
        return f"{info['status']} ({info['restarts']} restarts): {info['message']}"

    def stop(self) -> None:
        self.api.close()
        _terminate(self.process)


class DployrInstance:
    """An engine instance with backoff disabled (``benchmarks.engine_instance``), one program."""

    name = "dployr"

    def __init__(self, data_dir: Path, program: Program, source: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.started_at = time.time()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.engine_instance",
                str(data_dir),
                str(source),
                program.name,
                program.command,
            ],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def state(self, program: str) -> str:
        return "running" if self.process.poll() is None else "exited"

    def stop(self) -> None:
        _terminate(self.process)


# -- supervisord -------------------------------------------------------------------------


class Supervisord:
    """supervisord 4.3 in the foreground, one ``[program:x]`` per program."""

    name = "supervisord"

    def __init__(self, folder: Path, programs: list[Program], *, defaults: bool = False) -> None:
        binary = PEERS_BIN / "supervisord"
        if not binary.exists():
            raise NotInstalled(f"supervisord is not installed in {PEERS_BIN}")
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "supervisord.conf"
        sections = [
            "[supervisord]",
            f"logfile={folder}/supervisord.log",
            f"pidfile={folder}/supervisord.pid",
            f"childlogdir={folder}",
            "nodaemon=true",
            "[unix_http_server]",
            f"file={folder}/supervisor.sock",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "[supervisorctl]",
            f"serverurl=unix://{folder}/supervisor.sock",
        ]
        for program in programs:
            # supervisord expands %(name)s in commands: a literal % is written %%.
            command = shlex.join(program.argv).replace("%", "%%")
            sections += [
                f"[program:{program.name}]",
                f"command={command}",
                f"directory={program.cwd}",
                # `sh -c` does not exec its last command: stop the whole group, or the
                # program's own child outlives the stop.
                "stopasgroup=true",
                "killasgroup=true",
            ]
            if not defaults:
                sections += [
                    f"autorestart={'true' if program.restart else 'false'}",
                    "startsecs=0",
                ]
            if program.logs is not None:
                sections += [
                    f"stdout_logfile={program.out()}",
                    "stdout_logfile_maxbytes=0",
                    f"stderr_logfile={program.err()}",
                    "stderr_logfile_maxbytes=0",
                ]
        self.config.write_text("\n".join(sections) + "\n")
        self.started_at = time.time()
        self.process = subprocess.Popen(
            [str(binary), "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def state(self, program: str) -> str:
        reply = subprocess.run(
            [str(PEERS_BIN / "supervisorctl"), "-c", str(self.config), "status", program],
            capture_output=True,
            text=True,
            check=False,
        )
        return " ".join(reply.stdout.split())

    def stop(self) -> None:
        _terminate(self.process)


class CrashLoopSupervisord(Supervisord):
    """supervisord with its defaults for a program (startsecs=1, autorestart=unexpected)."""

    def __init__(self, folder: Path, programs: list[Program]) -> None:
        super().__init__(folder, programs, defaults=True)


# -- circus ------------------------------------------------------------------------------


class Circus:
    """circusd 0.19 in the foreground, one ``[watcher:x]`` per program."""

    name = "circus"

    def __init__(self, folder: Path, programs: list[Program], *, defaults: bool = False) -> None:
        binary = PEERS_BIN / "circusd"
        if not binary.exists():
            raise NotInstalled(f"circus is not installed in {PEERS_BIN}")
        folder.mkdir(parents=True, exist_ok=True)
        self.endpoint = f"ipc://{folder}/endpoint"
        sections = [
            "[circus]",
            f"endpoint = {self.endpoint}",
            f"pubsub_endpoint = ipc://{folder}/pubsub",
            f"stats_endpoint = ipc://{folder}/stats",
            "statsd = False",
            # How often circusd checks its watchers (and so respawns): circusd's own default
            # is 5 s; 1 s is the Arbiter's default and what the figure reflects.
            "check_delay = 1",
        ]
        for program in programs:
            sections += [
                f"[watcher:{program.name}]",
                f"cmd = {shlex.join(program.argv)}",
                f"working_dir = {program.cwd}",
                "copy_env = True",
                "warmup_delay = 0",
                "stop_children = True",  # `sh -c` does not exec its last command
            ]
            if not defaults:
                sections += [
                    f"respawn = {program.restart}",
                    "max_retry = -1",
                ]
            if program.logs is not None:
                sections += [
                    "stdout_stream.class = FileStream",
                    f"stdout_stream.filename = {program.out()}",
                    "stderr_stream.class = FileStream",
                    f"stderr_stream.filename = {program.err()}",
                ]
        config = folder / "circus.ini"
        config.write_text("\n".join(sections) + "\n")
        self.started_at = time.time()
        self.process = subprocess.Popen(
            [str(binary), str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            cwd=folder,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def state(self, program: str) -> str:
        reply = subprocess.run(
            [str(PEERS_BIN / "circusctl"), "--endpoint", self.endpoint, "status", program],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        return reply.stdout.strip()

    def stop(self) -> None:
        _terminate(self.process)


class CrashLoopCircus(Circus):
    """circus with its defaults for a watcher (respawn, max_retry 5)."""

    def __init__(self, folder: Path, programs: list[Program]) -> None:
        super().__init__(folder, programs, defaults=True)


# -- PM2 ---------------------------------------------------------------------------------


class Pm2:
    """PM2 7 with a ``PM2_HOME`` of its own; the God daemon is the managing process."""

    name = "PM2"

    def __init__(self, folder: Path, programs: list[Program], *, defaults: bool = False) -> None:
        if not PM2.exists() or shutil.which("node") is None:
            raise NotInstalled(f"PM2 is not installed at {PM2}")
        folder.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "PM2_HOME": str(folder / "home")}
        apps = []
        for program in programs:
            app: dict[str, object] = {
                "name": program.name,
                "script": "/bin/sh",
                "args": ["-c", program.command],
                "interpreter": "none",
                "cwd": str(program.cwd),
                "autorestart": program.restart,
                "merge_logs": True,
            }
            if not defaults:
                app |= {"restart_delay": 0, "max_restarts": 100_000, "min_uptime": 0}
            if program.logs is not None:
                app |= {"out_file": str(program.out()), "error_file": str(program.err())}
            else:
                app |= {"out_file": "/dev/null", "error_file": "/dev/null"}
            apps.append(app)
        config = folder / "ecosystem.json"
        config.write_text(json.dumps({"apps": apps}))
        self.started_at = time.time()
        self._pm2("start", str(config))
        pidfile = folder / "home" / "pm2.pid"
        self._pid = int(
            wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 30, "PM2")
        )

    def _pm2(self, *args: str) -> str:
        reply = subprocess.run(
            [str(PM2), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return reply.stdout

    @property
    def pid(self) -> int:
        return self._pid

    def state(self, program: str) -> str:
        for app in json.loads(self._pm2("jlist")):
            if app["name"] == program:
                env = app["pm2_env"]
                return f"{env['status']} ({env['restart_time']} restarts)"
        return "unknown"

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._pm2("kill")
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(self._pid).wait(10)


class CrashLoopPm2(Pm2):
    """PM2 with its defaults for an app (no restart delay, 16 unstable restarts)."""

    def __init__(self, folder: Path, programs: list[Program]) -> None:
        super().__init__(folder, programs, defaults=True)


def sweep(folder: Path) -> list[str]:
    """SIGKILL every process whose working dir is under ``folder``; return their dirs.

    A manager that is stopped should take its programs along; this makes sure that none
    that escaped (or whose manager was killed) outlives the benchmark.
    """
    prefix = str(folder.resolve())
    killed = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry.name}/cwd")
        except OSError:
            continue
        if cwd == prefix or cwd.startswith((prefix + "/", prefix + " (deleted)")):
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(cwd.removeprefix(prefix + "/"))
    return killed
