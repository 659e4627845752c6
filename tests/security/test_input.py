"""Hostile input gets a 4xx with a one-line reason, never a 500, and nothing is stored."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.helpers import Daemon, make_repo

BODY_ENDPOINTS = (
    ("POST", "/services/web/deploy"),
    ("POST", "/services/web/rollback"),
    ("PATCH", "/services/web/settings"),
    ("PUT", "/services/web/env"),
    ("POST", "/services/web/env/unset"),
)

LONE_SURROGATE = '"\\ud800"'  # JSON text for the string "\ud800"


def assert_refused(response: httpx.Response, *words: str) -> None:
    assert 400 <= response.status_code < 500, response.text
    message = response.json()["error"]["message"]
    assert "\n" not in message
    assert "Traceback" not in message
    for word in words:
        assert word in message, message


async def send(api: httpx.AsyncClient, method: str, path: str, raw: bytes) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    return await api.request(method, path, content=raw, headers=headers)


async def create_web(daemon: Daemon, tmp_path: Path) -> dict[str, object]:
    repo = make_repo(tmp_path / "repo", {"app.sh": "sleep 600\n"})
    body: dict[str, object] = {"remote": {"url": str(repo)}, "run_cmd": "sh app.sh"}
    async with daemon.client() as api:
        response = await api.post("/services/web/deploy", json=body)
        assert response.status_code == 202, response.text
    return body


@pytest.mark.slow
async def test_deeply_nested_bodies_are_refused_on_every_body_endpoint(daemon: Daemon) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    also_nested = b'{"a":' * 40 + b"1" + b"}" * 40  # deep, yet far from Python's limit
    async with daemon.client() as api:
        for method, path in BODY_ENDPOINTS:
            assert_refused(await send(api, method, path, nested), "nests deeper")
            assert_refused(await send(api, method, path, also_nested), "nests deeper")


@pytest.mark.slow
async def test_text_that_is_not_unicode_is_refused_and_not_stored(
    daemon: Daemon, tmp_path: Path
) -> None:
    body = await create_web(daemon, tmp_path)
    remote = json.dumps(body["remote"])
    fields = {
        "description": f'"description": {LONE_SURROGATE}',
        "run_cmd": f'"run_cmd": {LONE_SURROGATE}',
        "build_cmd": f'"build_cmd": {LONE_SURROGATE}',
        "working_dir": f'"working_dir": {LONE_SURROGATE}',
        "health": f'"health": {{"kind": "command", "command": {LONE_SURROGATE}}}',
    }
    async with daemon.client() as api:
        before = (await api.get("/services/web/settings")).json()["settings"]
        for name, field in fields.items():
            run = "" if name == "run_cmd" else '"run_cmd": "true", '
            raw = f'{{"remote": {remote}, {run}{field}}}'.encode()
            assert_refused(await send(api, "POST", "/services/web/deploy", raw), "Unicode")
            patch = f"{{{field}}}".encode()
            assert_refused(await send(api, "PATCH", "/services/web/settings", patch), "Unicode")
        env = f'{{"values": {{"KEY": {LONE_SURROGATE}}}}}'.encode()
        assert_refused(await send(api, "PUT", "/services/web/env", env), "Unicode")
        assert (await api.get("/services/web/settings")).json()["settings"] == before


@pytest.mark.slow
async def test_wrong_types_and_huge_numbers_are_refused_not_converted(
    daemon: Daemon, tmp_path: Path
) -> None:
    body = await create_web(daemon, tmp_path)
    async with daemon.client() as api:
        before = (await api.get("/services/web/settings")).json()["settings"]
        port = b'{"port": ' + b"9" * 5000 + b"}"
        assert_refused(await send(api, "PATCH", "/services/web/settings", port), "number")
        for failures in (1.5, "3", True):
            change = {"health": {"failures": failures}}
            response = await api.patch("/services/web/settings", json=change)
            assert_refused(response, "health.failures", "whole number")
            response = await api.post(
                "/services/web/deploy", json={**body, "health": {"failures": failures}}
            )
            assert_refused(response, "health.failures")
        assert_refused(
            await api.patch("/services/web/settings", json={"stop_grace": "10"}), "number"
        )
        assert_refused(await api.patch("/services/web/settings", json={"port": 80.5}), "port")
        assert_refused(
            await api.patch("/services/web/settings", json={"listen_fds": 1}), "true or false"
        )
        assert_refused(await api.get("/services/web/logs?tail=" + "9" * 5000), "tail")
        assert_refused(await api.get("/services/web/logs?after=" + "9" * 19), "after")
        assert (await api.get("/services/web/settings")).json()["settings"] == before


@pytest.mark.slow
async def test_times_out_of_range_are_refused_or_clamped(daemon: Daemon, tmp_path: Path) -> None:
    await create_web(daemon, tmp_path)
    nines = "9" * 44
    async with daemon.client() as api:
        for path in ("/services/web/logs", "/services/web/metrics"):
            response = await api.get(path, params={"since": "0001-01-01T00:00:00"})
            assert response.status_code == 200, response.text  # from the start of time
            assert_refused(await api.get(path, params={"since": nines}), "year 9999")
        assert_refused(await api.get("/services/web/metrics", params={"until": nines}), "year 9999")
        response = await api.get("/services/web/metrics", params={"since": "100000000w"})
        assert response.status_code == 200, response.text


@pytest.mark.slow
async def test_settings_refuse_a_remote_branch_or_commit_that_a_fetch_would_refuse(
    daemon: Daemon, tmp_path: Path
) -> None:
    body = await create_web(daemon, tmp_path)
    url = body["remote"]["url"]  # type: ignore[index]
    bad = (
        ({"url": "ext::sh -c touch% /tmp/pwned"}, "ext::"),
        ({"url": "--upload-pack=touch /tmp/pwned"}, "starts with '-'"),
        ({"url": url, "commit": "HEAD~1"}, "commit id"),
        ({"url": url, "branch": "--upload-pack=x"}, "branch"),
        ({"url": url, "branch": "a..b"}, "branch"),
        ({"url": "file:etc"}, "not a valid URL"),
    )
    async with daemon.client() as api:
        before = (await api.get("/services/web/settings")).json()["settings"]
        for remote, words in bad:
            response = await api.patch("/services/web/settings", json={"remote": remote})
            assert_refused(response, words)
            response = await api.post("/services/web/deploy", json={**body, "remote": remote})
            assert_refused(response, words)
        assert (await api.get("/services/web/settings")).json()["settings"] == before


@pytest.mark.slow
async def test_the_document_states_the_rules_and_every_405_says_what_is_allowed(
    daemon: Daemon,
) -> None:
    async with daemon.client() as api:
        document = (await api.get("/openapi.json")).json()
        response = await api.request("TRACE", "/services/web/restart")
        assert response.status_code == 405
        assert response.headers["Allow"] == "OPTIONS, POST"
        response = await api.delete(daemon.url + "/healthz")
        assert response.status_code == 405
        assert "GET" in response.headers["Allow"]
    schemas = document["components"]["schemas"]
    for name in ("Blueprint", "SettingsChange", "Remote", "Rollback", "EnvSet", "EnvUnset"):
        assert schemas[name]["additionalProperties"] is False, name
    deploy = document["paths"]["/api/v1/services/{name}/deploy"]["post"]
    (name,) = deploy["parameters"]
    assert name["schema"]["pattern"] == "^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
    port = schemas["Blueprint"]["properties"]["port"]["anyOf"][0]
    assert (port["minimum"], port["maximum"]) == (1, 65535)
    failures = schemas["HealthOptionsChange"]["properties"]["failures"]
    assert (failures["type"], failures["minimum"], failures["maximum"]) == ("integer", 1, 1000)
