"""The OpenAPI document matches the routes the app really serves."""

from __future__ import annotations

import re
from pathlib import Path

from quart_trio import QuartTrio

from dployr.cluster.hub import AgentHub
from dployr.cluster.uploads import Uploads
from dployr.gateway.app import create_app
from dployr.store.cluster import open_cluster_state
from tests.gateway.conftest import Served

METHODS = {"get", "put", "post", "delete", "patch"}


def served_routes(app: QuartTrio) -> set[tuple[str, str]]:
    """(method, OpenAPI path) for every URL rule under /api/v1, WebSocket feeds included."""
    found = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method.lower() in METHODS:
                found.add((method.lower(), path))
    return found


async def test_every_route_is_in_the_document_with_its_method(
    served: Served, tmp_path: Path
) -> None:
    response = await served.http.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    documented = {
        (method, path)
        for path, operations in document["paths"].items()
        for method in operations
        if method in METHODS
    }
    # A control plane's app: the agents' door (join, channel) is among its routes.
    state = open_cluster_state(None, tmp_path)
    try:
        gateway = served.gateway
        # And the uploads' route (POST /api/v1/uploads), as `dployr up` serves it.
        uploads = Uploads(tmp_path / "uploads")
        app = create_app(gateway.handle, gateway.tokens, door=AgentHub(state), uploads=uploads)
        routes = served_routes(app)
    finally:
        await state.aclose()
    assert {("post", "/api/v1/agent/join"), ("get", "/api/v1/agent")} <= routes
    assert len(routes) >= 18
    assert routes - documented == set(), "routes missing from the OpenAPI document"
    assert {r for r in documented if r[1].startswith("/api/v1")} - routes == set(), (
        "documented routes the app does not serve"
    )
    assert ("get", "/healthz") in documented


async def test_the_document_is_consistent(served: Served) -> None:
    document = (await served.http.get("/api/v1/openapi.json")).json()
    schemas = document["components"]["schemas"]
    operation_ids = []
    for path, operations in document["paths"].items():
        names = set(re.findall(r"{([^}]+)}", path))
        for operation in operations.values():
            operation_ids.append(operation["operationId"])
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (path, declared)
            for response in operation["responses"].values():
                for content in response.get("content", {}).values():
                    ref = content["schema"].get("$ref", "")
                    assert ref.removeprefix("#/components/schemas/") in schemas, ref
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"
    text = str(document)
    for ref in re.findall(r"#/components/schemas/(\w+)", text):
        assert ref in schemas, ref
