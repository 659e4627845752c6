"""The REST API over real HTTP: auth on every route, the one error shape, status codes."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from dployr.logs.values import lines_of
from dployr.protocol.events import DeploymentChanged
from tests.gateway.conftest import Served
from tests.helpers import PYTHON, raw_request, ws_handshake

SECRET = "s3cr3t-value-that-must-never-leak"
BODIES: dict[tuple[str, str], Any] = {
    ("PATCH", "/settings"): {"description": "x"},
    ("PUT", "/env"): {"values": {"A": "1"}},
    ("POST", "/env/unset"): {"keys": ["A"]},
}


def api_routes(served: Served) -> list[tuple[str, str]]:
    """Every (method, rule) of the app under /api/v1 that is plain HTTP."""
    found = []
    for rule in served.gateway.app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1") or rule.websocket:
            continue
        for method in sorted(rule.methods or ()):
            if method not in ("HEAD", "OPTIONS"):
                found.append((method, rule.rule))
    assert len(found) >= 17
    return found


def concrete(rule: str, name: str = "nope") -> str:
    return rule.replace("<name>", name).replace("<instance>", "local")


def body_for(method: str, rule: str) -> Any:
    for (m, suffix), body in BODIES.items():
        if m == method and rule.endswith(suffix):
            return body
    return None


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> str:
    """The response is the one error shape with ``status``; return its message."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    data = response.json()
    assert set(data) == {"error"}
    assert set(data["error"]) == {"code", "message"}
    assert data["error"]["message"]
    if code is not None:
        assert data["error"]["code"] == code
    return str(data["error"]["message"])


async def test_healthz_needs_no_token(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url) as anonymous:
        response = await anonymous.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_every_route_refuses_a_missing_or_wrong_token(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url) as anonymous:
        for method, rule in api_routes(served):
            url = concrete(rule)
            body = body_for(method, rule)
            missing = await anonymous.request(method, url, json=body)
            assert "token" in assert_error(missing, 401, "unauthorized")
            assert missing.headers["www-authenticate"] == "Bearer"
            wrong = await anonymous.request(
                method, url, json=body, headers={"Authorization": "Bearer dployr_wrong"}
            )
            assert assert_error(wrong, 401, "unauthorized") == "invalid API token"
            basic = await anonymous.request(
                method, url, json=body, headers={"Authorization": "Basic YTpi"}
            )
            assert_error(basic, 401, "unauthorized")


async def test_the_log_feed_refuses_a_missing_or_wrong_token(served: Served) -> None:
    path = "/api/v1/services/nope/logs/stream"
    assert_error(await ws_handshake(served.url, path, None), 401, "unauthorized")
    assert_error(await ws_handshake(served.url, path, "dployr_wrong"), 401, "unauthorized")
    mine = await ws_handshake(served.url, path, served.token)
    assert "no service named 'nope'" in assert_error(mine, 404, "not_found")


async def test_an_unknown_service_is_404_on_every_service_route(served: Served) -> None:
    routes = [(m, r) for m, r in api_routes(served) if "<name>" in r]
    assert len(routes) >= 13
    for method, rule in routes:
        response = await served.http.request(method, concrete(rule), json=body_for(method, rule))
        message = assert_error(response, 404, "not_found")
        assert "no service named 'nope'" in message, (method, rule, message)


async def test_an_unknown_instance_is_404(served: Served) -> None:
    assert_error(await served.http.get("/api/v1/instances/elsewhere"), 404, "not_found")
    listing = (await served.http.get("/api/v1/instances")).json()
    assert [i["name"] for i in listing] == ["local"]
    by_id = await served.http.get(f"/api/v1/instances/{listing[0]['id']}")
    assert by_id.json()["name"] == "local"


@pytest.mark.parametrize("name", ["my%20api", "%C3%A9t%C3%A9", "x" * 300, "UPPER", "-x", "a_b"])
async def test_invalid_service_names_are_422(served: Served, name: str) -> None:
    for path in ("", "/status", "/settings", "/env", "/logs"):
        response = await served.http.get(f"/api/v1/services/{name}{path}")
        assert "invalid service name" in assert_error(response, 422, "invalid")
    body = {"remote": {"url": "/tmp"}, "run_cmd": "true"}
    response = await served.http.post(f"/api/v1/services/{name}/deploy", json=body)
    assert_error(response, 422, "invalid")


@pytest.mark.parametrize("path", ["/api/v1/services/..%2Fx", "/api/v1/services/", "/api/v1/nope"])
async def test_an_unknown_route_is_a_json_404(served: Served, path: str) -> None:
    assert "no such route" in assert_error(await served.http.get(path), 404)


async def test_a_wrong_method_is_a_json_405(served: Served) -> None:
    assert_error(await served.http.put("/api/v1/services"), 405)


@pytest.mark.parametrize(
    "case",
    [
        ("POST", "/services/x/deploy", b"{bad", 400, "malformed JSON"),
        ("POST", "/services/x/deploy", b"[1, 2]", 422, "table"),
        ("POST", "/services/x/deploy", b'{"run_cmd": "true"}', 422, "remote"),
        ("POST", "/services/x/deploy", b'{"remote": "/tmp", "run_cmd": 3}', 422, "run_cmd"),
        ("POST", "/services/x/deploy", b'{"remote": "/tmp", "run_cmd": "a", "x": 1}', 422, "x"),
        (
            "POST",
            "/services/x/deploy",
            b'{"remote": "/tmp", "run_cmd": "a", "port": 0}',
            422,
            "port",
        ),
        (
            "POST",
            "/services/x/deploy",
            b'{"remote": "/tmp", "run_cmd": "a", "port": "80"}',
            422,
            "port",
        ),
        (
            "POST",
            "/services/x/deploy",
            b'{"name": "y", "remote": "/tmp", "run_cmd": "a"}',
            422,
            "names",
        ),
        ("PATCH", "/services/x/settings", b"", 400, "JSON body"),
        ("PUT", "/services/x/env", b'{"values": {"1A": "x"}}', 422, "1A"),
        ("PUT", "/services/x/env", b'{"values": {"PORT": "1"}}', 422, "PORT"),
        ("PUT", "/services/x/env", b'{"values": {"A": 1}}', 422, "string"),
        ("PUT", "/services/x/env", b'{"values": []}', 422, "values"),
        ("POST", "/services/x/env/unset", b'{"keys": []}', 422, "keys"),
        ("GET", "/services/x/logs?tail=abc", b"", 400, "tail"),
        ("GET", "/services/x/logs?tail=-1", b"", 400, "tail"),
        ("GET", "/services/x/logs?since=yesterday", b"", 422, "time"),
        ("GET", "/services/x/logs?streams=nope", b"", 422, "nope"),
        ("GET", "/services/x/logs?build=maybe", b"", 400, "build"),
        ("GET", "/services/x/deployments?limit=0", b"", 400, "limit"),
    ],
)
async def test_bad_input_is_refused_with_a_message(
    served: Served, case: tuple[str, str, bytes, int, str]
) -> None:
    method, path, content, status, text = case
    response = await served.http.request(
        method, "/api/v1" + path, content=content, headers={"Content-Type": "application/json"}
    )
    assert text in assert_error(response, status)
    assert served.instance.services == {}  # nothing was created


async def test_a_body_over_1_mib_is_413(served: Served) -> None:
    # By hand: httpx leaves its body iterator suspended when the answer comes first, and
    # its finalizer then complains whenever the collector gets to it.
    big = b'{"run_cmd": "' + b"a" * (1 << 20) + b'"}'
    auth = ("Authorization", f"Bearer {served.token}")
    headers = [auth, ("Content-Type", "application/json"), ("Content-Length", str(len(big)))]
    response = await raw_request(served.url, "POST", "/api/v1/services/x/deploy", headers, [big])
    assert "larger than" in assert_error(response, 413)

    # Without a Content-Length the body is counted as it arrives.
    headers = [auth, ("Transfer-Encoding", "chunked")]
    chunked = await raw_request(
        served.url, "POST", "/api/v1/services/x/deploy", headers, [b" " * 65536] * 20
    )
    assert_error(chunked, 413)
    assert served.instance.services == {}


async def deploy(served: Served, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """Deploy through the API; wait for the deploy to end; the deployment's record."""
    if body:  # counts as started sooner than 5 s (an empty body deploys the stored settings)
        body = {"restart": {"min_uptime": 0.3}, **body}
    with served.instance.changes.subscribe() as changes:
        response = await served.http.post(f"/api/v1/services/{name}/deploy", json=body)
        assert response.status_code == 202, response.text
        number = response.json()["id"]
        with trio.fail_after(20):
            while not any(
                c.deployment == number and c.status.finished
                for c in await changes.receive()
                if isinstance(c, DeploymentChanged)
            ):
                pass
    records = (await served.http.get(f"/api/v1/services/{name}/deployments")).json()
    return dict(next(r for r in records if r["id"] == number))


@pytest.fixture
def worker(tmp_path: Path) -> Path:
    folder = tmp_path / "worker"
    folder.mkdir()
    (folder / "worker.py").write_text(
        "import os, signal\n"
        "print('worker up, secret has', len(os.environ['DB_PASSWORD']), 'chars', flush=True)\n"
        "signal.pause()\n"
    )
    return folder


async def test_secrets_are_never_returned(served: Served, worker: Path) -> None:
    body = {
        "remote": {"url": str(worker)},
        "run_cmd": f"{PYTHON} worker.py",
        "env_vars": {"PLAIN": "visible"},
        "secrets": {"DB_PASSWORD": SECRET},
    }
    record = await deploy(served, "w", body)
    assert record["status"] == "succeeded", record
    response = await served.http.put(
        "/api/v1/services/w/env", json={"values": {"API_KEY": SECRET + "2"}, "secret": True}
    )
    assert SECRET not in response.text
    listing = {v["key"]: v for v in response.json()["vars"]}
    assert listing["DB_PASSWORD"]["secret"] is True
    assert listing["DB_PASSWORD"]["value"] != SECRET
    assert listing["PLAIN"] == {"key": "PLAIN", "value": "visible", "secret": False}
    for path in (
        "/services",
        "/services/w",
        "/services/w/status",
        "/services/w/settings",
        "/services/w/env",
        "/services/w/deployments",
        "/services/w/logs?tail=1000",
        "/instances",
    ):
        text = (await served.http.get("/api/v1" + path)).text
        assert SECRET not in text, path
    feed = served.instance.handle.follow_logs("w", after=0)
    with trio.fail_after(20):  # the worker saw the secret: it says how long it is
        async with contextlib.aclosing(feed):
            async for batch in feed:
                lines = batch if isinstance(batch, list) else []
                lines += lines_of(batch) if isinstance(batch, tuple) else []
                if any(f"secret has {len(SECRET)} chars" in line.line for line in lines):
                    break
    stop = await served.http.post("/api/v1/services/w/stop")
    assert stop.json()["status"] == "stopped"


async def test_deploy_answers_at_once_with_the_deployment(served: Served, worker: Path) -> None:
    body = {
        "remote": {"url": str(worker)},
        "run_cmd": f"{PYTHON} worker.py",
        "restart": {"min_uptime": 0.3},  # counts as started sooner than the default 5 s
    }
    with served.instance.changes.subscribe() as changes:
        response = await served.http.post(
            "/api/v1/services/w/deploy", json={**body, "secrets": {"DB_PASSWORD": "x"}}
        )
        assert response.status_code == 202
        deployment = response.json()
        assert deployment["service"] == "w"
        assert isinstance(deployment["id"], int)
        assert deployment["status"] in ("pending", "fetching", "building", "starting")
        again = await served.http.post("/api/v1/services/w/deploy", json=body)
        message = assert_error(again, 409, "conflict")  # one deploy at a time
        assert f"deploy {deployment['id']} of w is already running" in message
        with trio.fail_after(20):
            while not any(
                c.deployment == deployment["id"] and c.status.finished
                for c in await changes.receive()
                if isinstance(c, DeploymentChanged)
            ):
                pass
    record = await deploy(served, "w", {})  # an empty body deploys the stored settings again
    assert record["status"] == "succeeded"
    deleted = await served.http.delete("/api/v1/services/w")
    assert deleted.json() == {"name": "w"}
    assert_error(await served.http.get("/api/v1/services/w"), 404, "not_found")


async def test_the_log_feed_refuses_an_invalid_name_as_such(served: Served) -> None:
    response = await ws_handshake(served.url, "/api/v1/services/UPPER/logs/stream", served.token)
    assert "invalid service name" in assert_error(response, 422, "invalid")
    response = await ws_handshake(
        served.url, "/api/v1/services/nope/logs/stream?cursor=x", served.token
    )
    assert "whole number" in assert_error(response, 400)
