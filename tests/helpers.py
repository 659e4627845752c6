"""Helpers shared by tests that run real services: git repos, apps, waiting on events."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}

PYTHON = sys.executable
"""Start Python children with this interpreter (the first python3 on PATH can be a slow shim)."""

WEB_APP = '''\
"""A tiny web app for tests: GET / answers, GET /crash exits, GET /env shows a variable."""
import http.server
import os
import sys

PORT = int(os.environ["PORT"])
DEPLOYMENT = os.environ.get("DPLOYR_DEPLOYMENT", "?")
VERSION = open("VERSION").read().strip() if os.path.exists("VERSION") else "none"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/crash":
            print("crashing on request", file=sys.stderr, flush=True)
            os._exit(3)
        if self.path.startswith("/env/"):
            body = os.environ.get(self.path[5:], "<unset>")
        elif self.path == "/health":
            body = "ok"
        else:
            body = f"hello {VERSION} {DEPLOYMENT}"
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        print("request", self.path, flush=True)


server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print(f"listening on {PORT} version {VERSION}", flush=True)
server.serve_forever()
'''


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` with a fixed identity; return its output."""
    env = {**os.environ, **GIT_ENV}
    result = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, check=True, capture_output=True, text=True
    )
    return result.stdout.strip()


def make_repo(path: Path, files: dict[str, str], *, branch: str = "main") -> Path:
    """A git repository at ``path`` with one commit of ``files``."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    commit(path, files, "initial")
    return path


def commit(repo: Path, files: dict[str, str], message: str = "change") -> str:
    """Write ``files`` into ``repo`` and commit them; return the commit id."""
    for name, text in files.items():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def web_repo(path: Path, version: str = "v1") -> Path:
    """A repository holding the test web app."""
    return make_repo(path, {"app.py": WEB_APP, "VERSION": version + "\n"})


def service_processes() -> dict[int, tuple[str, str]]:
    """Live processes started for a service: pid -> (instance id, service name)."""
    found = {}
    for process in psutil.process_iter():
        try:
            env = process.environ()
            if "DPLOYR_SERVICE" in env and process.status() != psutil.STATUS_ZOMBIE:
                found[process.pid] = (env.get("DPLOYR_INSTANCE", ""), env["DPLOYR_SERVICE"])
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def pids_of_service(name: str, instance: str | None = None) -> list[int]:
    """Pids of live processes of service ``name`` (of one instance, if given)."""
    return sorted(
        pid
        for pid, (owner, service) in service_processes().items()
        if service == name and (instance is None or owner == instance)
    )
