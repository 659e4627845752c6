"""``GET /api/v1/control-planes`` from an instance's API served alone (no control plane)."""

from __future__ import annotations

from tests.gateway.conftest import Served


async def test_an_api_served_by_no_control_plane_says_it_has_none_to_list(served: Served) -> None:
    response = await served.http.get("/api/v1/control-planes")
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "code": "not_found",
            "message": "this server is not a control plane: it has none to list",
        }
    }
