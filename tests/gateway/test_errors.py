"""One table from an error to its HTTP status: the protocol's codes, and never a 400 for
an error the request did not cause."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
import trio

from dployr.engine.handle import error_of
from dployr.engine.instance import EngineConfig, Instance
from dployr.engine.proxy import PortInUse
from dployr.errors import ActorDead, DployrError, SpecError
from dployr.gateway.responses import STATUSES, BadRequest, status_for
from dployr.gateway.server import Gateway
from dployr.protocol.errors import ERROR_CODES
from dployr.store.access_store import AccessStore
from dployr.store.errors import DiskFull, StoreError, UnknownService
from dployr.store.store import Store
from tests.gateway.test_api import assert_error
from tests.helpers import PYTHON, TEST_ENGINE, make_repo


def test_every_code_has_its_status() -> None:
    assert {code: STATUSES[code] for code in ERROR_CODES} == {
        "not_found": 404,
        "conflict": 409,
        "invalid": 422,
        "unavailable": 503,
        "internal": 500,
    }
    assert status_for(BadRequest("malformed JSON body")) == (400, "bad_request")
    assert status_for(SpecError("a bad value")) == (422, "invalid")
    # What the gateway cannot place is its own fault: a 500, never a 400.
    assert status_for(DployrError("something dployr did not foresee")) == (500, "internal")
    assert status_for(RuntimeError("boom")) == (500, "internal")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UnknownService("no service named 'x'"), "not_found"),
        (PortInUse("port 80 is already in use by another program"), "conflict"),
        (SpecError("invalid service name"), "invalid"),
        (ActorDead("supervisor 'local' is not running"), "unavailable"),
        (DiskFull("the disk is full"), "unavailable"),
        (StoreError("cannot write the database"), "internal"),
        (KeyError("x"), "internal"),
    ],
)
def test_the_engine_errors_map_to_one_code_each(error: Exception, code: str) -> None:
    assert error_of(error).code == code


async def test_a_request_to_a_stopped_instance_is_503_not_400(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """The instance's supervisor is gone (the daemon is stopping it): asking it to start a
    service is refused as unavailable, and whoever asks may try again later."""
    store = Store.open(tmp_path / "dployr.db")
    token = store.create_token("admin")
    instance = Instance(
        EngineConfig(data_dir=tmp_path, service_host="127.0.0.1", **TEST_ENGINE), store
    )
    running, stopped = trio.CancelScope(), trio.Event()

    async def run_instance(*, task_status: trio.TaskStatus[object]) -> None:
        with running:
            await instance.run(task_status=task_status)
        stopped.set()

    handle = await nursery.start(run_instance)
    gateway = Gateway(handle, AccessStore(store), "127.0.0.1", 0)
    url = await nursery.start(gateway.run, None)
    running.cancel()  # the instance stops; the gateway still serves
    with trio.fail_after(30):
        await stopped.wait()
    repo = make_repo(tmp_path / "repo", {"w.py": "import time\ntime.sleep(60)\n"})
    body = {"remote": {"url": str(repo)}, "run_cmd": f"{PYTHON} w.py"}
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http:
        response = await http.post("/api/v1/services/w/deploy", json=body)
    assert "not running" in assert_error(response, 503, "unavailable")
    nursery.cancel_scope.cancel()


async def test_an_error_the_gateway_cannot_place_is_a_logged_500(
    tmp_path: Path, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """Any InstanceHandle may fail in ways the gateway does not know: it answers 500 and
    logs the error, and the request is not blamed (no 4xx)."""
    store = Store.open(tmp_path / "dployr.db")
    token = store.create_token("admin")

    class Broken:
        instance_name = "broken"
        generation = 0

        async def request(self, request: object, /) -> object:
            raise ZeroDivisionError("a fault in the instance")

    gateway = Gateway(Broken(), AccessStore(store), "127.0.0.1", 0)  # type: ignore[arg-type]
    url = await nursery.start(gateway.run, None)
    headers = {"Authorization": f"Bearer {token}"}
    with caplog.at_level(logging.ERROR, logger="dployr.gateway"):
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http:
            response = await http.get("/api/v1/services/web")
    assert assert_error(response, 500, "internal") == "internal error: ZeroDivisionError"
    assert any("ZeroDivisionError" in (r.exc_text or "") for r in caplog.records)
    nursery.cancel_scope.cancel()
