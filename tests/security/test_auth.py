"""Auth hardening against a real daemon: sign-in throttling, ``?token=``, durable logout,
scoped tokens, revocation and the audit log (issue 12, point 8)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from dployr.gateway.access import LoginThrottle
from dployr.gateway.dashboard import safe_next
from tests.helpers import PYTHON, UP_ARGS, Daemon, make_repo, ws_handshake

pytestmark = pytest.mark.slow

WAIT = 30.0
UP = [PYTHON, "-m", "dployr", "up", "--port", "0", "--service-host", "127.0.0.1", *UP_ARGS]
SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(1e6)\n"


class LoggedDaemon(Daemon):
    """A daemon whose stderr (its log lines) is kept in a file."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.log = data_dir.parent / f"{data_dir.name}.log"

    async def start(self) -> str:
        with self.log.open("ab") as log:
            self.process = await trio.lowlevel.open_process(
                [*UP, "--data-dir", str(self.data_dir)],
                stdout=subprocess.PIPE,
                stderr=log,
                env={k: v for k, v in os.environ.items() if not k.startswith("DPLOYR_")},
            )
        assert self.process.stdout is not None
        seen = b""
        with trio.fail_after(WAIT):
            while b"\n" not in seen:
                chunk = await self.process.stdout.receive_some(4096)
                assert chunk, f"dployr up exited before it was up: {seen!r}"
                seen += chunk
        self.url = seen.split(b" is up: ", 1)[1].split()[0].decode()
        return self.url

    def http(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=WAIT)


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[LoggedDaemon]:
    running = LoggedDaemon(tmp_path / "data")
    await running.start()
    yield running
    assert await running.stop() == 0


async def new_token(daemon: Daemon, name: str, scope: str, **fields: Any) -> str:
    async with daemon.client() as api:
        answer = await api.post("/tokens", json={"name": name, "scope": scope, **fields})
    assert answer.status_code == 201, answer.text
    assert answer.json()["scope"] == scope
    return str(answer.json()["token"])


async def deploy_sleeper(daemon: Daemon, name: str, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / f"repo-{name}", {"app.py": SLEEPER})
    async with daemon.client() as api:
        answer = await api.post(
            f"/services/{name}/deploy",
            json={
                "remote": {"url": str(repo)},
                "run_cmd": f"{PYTHON} app.py",
                "restart": {"min_uptime": 0.3},
            },
        )
    assert answer.status_code == 202, answer.text
    await daemon.wait_log(name, f"deploy {answer.json()['id']}: succeeded")


async def sign_in(daemon: LoggedDaemon, token: str) -> tuple[str, str]:
    """Sign in through the login form; the session cookie and its CSRF token."""
    async with daemon.http() as web:
        answer = await web.post("/login", data={"token": token, "next": "/services"})
        assert answer.status_code == 302, answer.text
        cookie = answer.cookies["dployr_session"]
        page = await web.get("/services", headers=session(cookie))
    assert page.status_code == 200
    match = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert match is not None
    return cookie, match.group(1)


def session(cookie: str) -> dict[str, str]:
    """The headers of a request made with a session cookie."""
    return {"Cookie": f"dployr_session={cookie}"}


def one_line(answer: httpx.Response, status: int) -> str:
    assert answer.status_code == status, (answer.status_code, answer.text)
    message = str(answer.json()["error"]["message"])
    assert "\n" not in message
    return message


# -- sign-in throttling ------------------------------------------------------------------


async def test_wrong_sign_ins_are_throttled_and_logged(daemon: LoggedDaemon) -> None:
    wrong = "dployr_" + "x" * 43
    statuses = []
    async with daemon.http() as web:
        for _ in range(40):
            answer = await web.post("/login", data={"token": wrong, "next": "/services"})
            statuses.append(answer.status_code)
        # Locked out: even the right token is not looked at now.
        locked = await web.post("/login", data={"token": daemon.token, "next": "/services"})
    assert statuses[:5] == [401] * 5
    assert 429 in statuses
    # 40 tries in a row: a handful were checked, the rest refused unread (1 s, 2 s, ...).
    assert statuses.count(401) <= 10, statuses
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) >= 1
    assert "Too many failed sign-ins" in locked.text
    failures = [line for line in daemon.log.read_text().splitlines() if "failed sign-in" in line]
    assert len(failures) == statuses.count(401)
    assert failures[0] == "dashboard: failed sign-in from 127.0.0.1 (1 in a row)"
    assert "wait 1 s" in failures[5]
    assert wrong not in daemon.log.read_text()


# -- ?token= -------------------------------------------------------------------------------


async def test_a_token_in_the_query_is_refused_on_rest_routes(daemon: LoggedDaemon) -> None:
    async with daemon.http() as web:
        for path in ("/api/v1/services", "/metrics", "/api/v1/tokens"):
            answer = await web.get(path, params={"token": daemon.token})
            assert "accepted only by the WebSocket feeds" in one_line(answer, 401)
        # The feeds take it (a browser cannot set their headers).
        url = daemon.url.replace("http://", "ws://") + f"/api/v1/events?token={daemon.token}"
        with trio.fail_after(WAIT):
            async with open_websocket_url(url):
                pass


async def test_a_token_is_never_copied_into_a_redirect(daemon: LoggedDaemon) -> None:
    async with daemon.http() as web:
        page = await web.get("/services/web/logs", params={"token": daemon.token, "x": "1"})
        assert page.status_code == 302
        assert daemon.token not in page.headers["Location"]
        assert page.headers["Location"] == "/login?next=/services/web/logs%3Fx%3D1"
        form = await web.get("/login", params={"next": f"/services?token={daemon.token}"})
        assert daemon.token not in form.text
        signed = await web.post(
            "/login", data={"token": daemon.token, "next": f"/services?token={daemon.token}"}
        )
        assert signed.headers["Location"] == "/services"


# -- logout --------------------------------------------------------------------------------


async def test_a_logged_out_session_stays_dead_after_a_restart(tmp_path: Path) -> None:
    daemon = LoggedDaemon(tmp_path / "data")
    await daemon.start()
    try:
        cookie, csrf = await sign_in(daemon, daemon.token)
        async with daemon.http() as web:
            out = await web.post("/logout", data={"csrf_token": csrf}, headers=session(cookie))
            assert out.status_code == 302
            refused = await web.get("/api/v1/services", headers=session(cookie))
            assert refused.status_code == 401
    finally:
        assert await daemon.stop() == 0
    await daemon.start()
    try:
        async with daemon.http() as web:
            # The copy of the cookie kept from before the logout.
            api = await web.get("/api/v1/services", headers=session(cookie))
            assert api.status_code == 401
            page = await web.get("/services", headers=session(cookie))
            assert page.status_code == 302
            assert page.headers["Location"].startswith("/login")
        # A session opened after the restart works.
        fresh, _ = await sign_in(daemon, daemon.token)
        async with daemon.http() as web:
            api = await web.get("/api/v1/services", headers=session(fresh))
            assert api.status_code == 200
    finally:
        assert await daemon.stop() == 0


# -- scopes ------------------------------------------------------------------------------


async def test_a_read_token_reads_and_changes_nothing(daemon: LoggedDaemon, tmp_path: Path) -> None:
    await deploy_sleeper(daemon, "web", tmp_path)
    async with daemon.client() as api:
        secret = await api.put("/services/web/env", json={"values": {"K": "s3"}, "secret": True})
        assert secret.status_code == 200
    token = await new_token(daemon, "reader", "read")
    async with daemon.http(token) as web:
        for path in ("services", "services/web", "services/web/logs", "services/web/metrics"):
            assert (await web.get(f"/api/v1/{path}")).status_code == 200, path
        for path in ("services/web/status", "services/web/settings", "instances"):
            assert (await web.get(f"/api/v1/{path}")).status_code == 200, path
        env = await web.get("/api/v1/services/web/env")
        assert env.status_code == 200
        assert "s3" not in env.text
        assert (await web.get("/metrics")).status_code == 200
        changes = [
            web.post("/api/v1/services/web/restart"),
            web.post("/api/v1/services/web/stop"),
            web.post("/api/v1/services/web/deploy"),
            web.patch("/api/v1/services/web/settings", json={"description": "x"}),
            web.put("/api/v1/services/web/env", json={"values": {"A": "1"}}),
            web.delete("/api/v1/services/web"),
        ]
        for change in changes:
            assert "can only read" in one_line(await change, 403)
        assert "needs an admin token" in one_line(await web.get("/api/v1/tokens"), 403)
        assert "needs an admin token" in one_line(await web.get("/api/v1/audit"), 403)
    async with daemon.client() as api:
        assert (await api.get("/services/web")).json()["status"] == "running"


async def test_a_deploy_token_operates_but_does_not_delete_or_manage_tokens(
    daemon: LoggedDaemon, tmp_path: Path
) -> None:
    await deploy_sleeper(daemon, "web", tmp_path)
    token = await new_token(daemon, "ci", "deploy")
    async with daemon.http(token) as web:
        assert (await web.post("/api/v1/services/web/restart")).status_code == 200
        settings = await web.patch("/api/v1/services/web/settings", json={"description": "ci"})
        assert settings.status_code == 200
        env = await web.put("/api/v1/services/web/env", json={"values": {"A": "1"}})
        assert env.status_code == 200
        assert "needs an admin token" in one_line(await web.delete("/api/v1/services/web"), 403)
        create = await web.post("/api/v1/tokens", json={"name": "x", "scope": "admin"})
        assert "needs an admin token" in one_line(create, 403)
        rotate = await web.post("/api/v1/secrets/rotate-key")
        assert "needs an admin token" in one_line(rotate, 403)


async def test_a_token_for_one_service_sees_and_touches_only_it(
    daemon: LoggedDaemon, tmp_path: Path
) -> None:
    await deploy_sleeper(daemon, "web", tmp_path)
    await deploy_sleeper(daemon, "api", tmp_path)
    token = await new_token(daemon, "web-ci", "deploy", service="web")
    async with daemon.http(token) as web:
        listed = await web.get("/api/v1/services")
        assert [s["name"] for s in listed.json()] == ["web"]
        latest = await web.get("/api/v1/metrics/latest")
        assert {s["service"] for s in latest.json()["samples"]} <= {"web"}
        assert (await web.post("/api/v1/services/web/restart")).status_code == 200
        for refused in (
            web.get("/api/v1/services/api"),
            web.post("/api/v1/services/api/restart"),
            web.post("/api/v1/services/other/deploy"),
            web.get("/metrics"),
        ):
            assert "limited to the service 'web'" in one_line(await refused, 403)
    events = await ws_handshake(daemon.url, "/api/v1/events", token)
    assert events.status_code == 403
    other = await ws_handshake(daemon.url, "/api/v1/services/api/logs/stream", token)
    assert other.status_code == 403
    own = daemon.url.replace("http://", "ws://") + "/api/v1/services/web/logs/stream?tail=1"
    bearer = [(b"Authorization", f"Bearer {token}".encode())]
    with trio.fail_after(WAIT):
        async with open_websocket_url(own, extra_headers=bearer):
            pass
    admin_for_one = await new_token(daemon, "web-admin", "admin", service="web")
    async with daemon.http(admin_for_one) as web:
        for refused in (web.get("/api/v1/tokens"), web.get("/api/v1/audit")):
            assert "limited to the service 'web'" in one_line(await refused, 403)
        assert (await web.get("/api/v1/services/web/settings")).status_code == 200


# -- the CLI, revocation, the audit log ------------------------------------------------------


async def cli(daemon: Daemon, *args: str, token: str | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPLOYR_")}
    where = ["--server", daemon.url, "--token", token] if token else ["--data-dir"]
    if not token:
        where.append(str(daemon.data_dir))
    with trio.fail_after(WAIT):
        done = await trio.run_process(
            [PYTHON, "-m", "dployr", *where, *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
        )
    err = done.stderr.decode()
    assert "Traceback" not in err, err
    return done.returncode, done.stdout.decode(), err


async def test_tokens_from_the_cli_revoked_at_once_and_audited(
    daemon: LoggedDaemon, tmp_path: Path
) -> None:
    await deploy_sleeper(daemon, "web", tmp_path)
    code, out, err = await cli(daemon, "tokens", "create", "ann", "--scope", "deploy")
    assert code == 0, err
    token = out.strip()
    assert token.startswith("dployr_")
    assert "shown only this once" in err
    code, out, err = await cli(
        daemon, "tokens", "create", "peek", "--scope", "read", "--expires-in", "30d"
    )
    reader = out.strip()
    code, _, err = await cli(daemon, "tokens", "create", "ann", "--scope", "read")
    assert (code, err) == (1, "error: an API token named 'ann' already exists\n")
    code, _, err = await cli(daemon, "tokens", "create", "x", "--scope=read", "--expires-in=1y")
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "not a lifetime such as 90m, 12h, 30d or 2w" in err
    # With --server and the admin token too: tokens are managed through the API.
    code, out, err = await cli(daemon, "tokens", "list", "--json", token=daemon.token)
    assert code == 0, err
    listed = {t["name"]: t for t in json.loads(out)}
    assert set(listed) == {"admin", "ann", "peek"}
    assert listed["peek"]["expires_at"] is not None
    assert listed["ann"]["scope"] == "deploy"
    assert token not in out
    code, out, _ = await cli(daemon, "tokens", "list")
    assert out.splitlines()[0].split() == [
        "NAME", "SCOPE", "SERVICE", "CREATED", "EXPIRES", "LAST", "USED"
    ]  # fmt: skip

    # The deploy token acts, from the CLI and from a dashboard session opened with it.
    code, _, err = await cli(daemon, "service", "restart", "web", token=token)
    assert code == 0, err
    cookie, csrf = await sign_in(daemon, token)
    async with daemon.http() as web:
        stop = await web.post(
            "/api/v1/services/web/stop",
            headers={"X-CSRF-Token": csrf, **session(cookie)},
        )
        assert stop.status_code == 200
    code, _, err = await cli(daemon, "delete", "web", "--yes", token=reader)
    assert err == "error: the token 'peek' can only read (scope read): it changes nothing\n"

    code, _, err = await cli(daemon, "tokens", "revoke", "ann")
    assert code == 0, err
    async with daemon.http(token) as web:
        assert (await web.get("/api/v1/services")).status_code == 401
        opened = await web.get("/api/v1/services", headers=session(cookie))
        assert opened.status_code == 401
    code, _, err = await cli(daemon, "service", "start", "web", token=token)
    assert err == "error: invalid API token\n"

    code, out, err = await cli(daemon, "audit", "--service", "web", "--json")
    assert code == 0, err
    rows = [(r["token"], r["method"], r["path"], r["status"]) for r in json.loads(out)]
    assert rows[:3] == [
        ("peek", "DELETE", "/api/v1/services/web", 403),
        ("ann", "POST", "/api/v1/services/web/stop", 200),
        ("ann", "POST", "/api/v1/services/web/restart", 200),
    ]
    assert ("admin", "POST", "/api/v1/services/web/deploy", 202) in rows
    code, out, _ = await cli(daemon, "audit", "--limit", "3")
    assert "DELETE" in out.splitlines()[1]
    assert "/api/v1/tokens/ann" in out
    assert len(out.splitlines()) == 4


# -- the throttle's rule (no daemon) ------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_lock_out_doubles_up_to_a_bound_and_is_forgotten() -> None:
    clock = Clock()
    throttle = LoginThrottle(free=2, longest=8, forget_after=100, clock=clock)
    assert throttle.failed("a") == (1, 0.0)
    assert throttle.failed("a") == (2, 0.0)
    assert throttle.wait("a") == 0
    locks = [throttle.failed("a")[1] for _ in range(5)]
    assert locks == [1, 2, 4, 8, 8]
    assert throttle.wait("a") == 8
    assert throttle.wait("b") == 0  # per address
    clock.now += 8
    assert throttle.wait("a") == 0
    clock.now += 92
    assert throttle.failed("a") == (1, 0.0)  # a long quiet starts afresh
    throttle.failed("a")
    throttle.failed("a")
    throttle.succeeded("a")
    assert throttle.wait("a") == 0


def test_the_throttle_remembers_a_bounded_number_of_addresses() -> None:
    throttle = LoginThrottle(free=0, kept=3, clock=Clock())
    for address in ("a", "b", "c", "d"):
        throttle.failed(address)
    assert throttle.wait("a") == 0
    assert [throttle.wait(address) for address in ("b", "c", "d")] == [1, 1, 1]


def test_the_login_next_never_keeps_a_token() -> None:
    assert safe_next("/services/web?token=dployr_x&tab=1") == "/services/web?tab=1"
    assert safe_next("/services?token=dployr_x") == "/services"
    assert safe_next("/services/web?tab=1") == "/services/web?tab=1"
