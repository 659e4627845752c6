"""The REST routes of a cluster's instances: list them, add one (its join token), remove one;
and its control planes: list them, the leader marked.

Declared as a table like :data:`dployr.gateway.api.ROUTES` (the app registers both, the
OpenAPI document is generated from both), each instance route one handle request. Adding
and removing are for admin tokens (:data:`dployr.gateway.access.ADMIN_CHANGES`); a token
limited to one service sees no instance, since an instance shows every service on it.
The control planes are listed by the :class:`ControlPlanes` the app was given (a
``dployr up``'s :class:`~dployr.cluster.peers.Peers`), for any token: they show no service.
"""

from __future__ import annotations

from typing import Any, Protocol

from quart import current_app, request

from dployr.errors import SpecError
from dployr.gateway.api import Route, json_body
from dployr.protocol import messages as m
from dployr.protocol.errors import Error
from dployr.protocol.handle import InstanceHandle

_STR = {"type": "string"}
_NUM = {"type": "number"}
_INT = {"type": "integer"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


class ControlPlanes(Protocol):
    """The control planes of the cluster, as the one serving the API knows them."""

    async def listing(self) -> tuple[m.ControlPlaneView, ...]:
        """Every control plane, the leader marked, the one answering marked ``is_self``."""
        ...


CONTROL_PLANES = "dployr.control_planes"
"""The app's extension that holds its :class:`ControlPlanes` (absent: none)."""


async def list_instances(handle: InstanceHandle, _: dict[str, str]) -> tuple[Any, int]:
    return await handle.request(m.ListInstances()), 200


async def get_instance(handle: InstanceHandle, args: dict[str, str]) -> tuple[Any, int]:
    wanted = args["instance"]
    views = await handle.request(m.ListInstances())
    for view in views:
        if wanted in (view.name, view.id):
            return view, 200
    raise Error(
        "not_found", f"no instance {wanted!r} (instances: {', '.join(v.name for v in views)})"
    )


async def add_instance(handle: InstanceHandle, _: dict[str, str]) -> tuple[Any, int]:
    data = await json_body(request)
    if not isinstance(data, dict) or set(data) != {"name"} or not isinstance(data["name"], str):
        raise SpecError('the body must be {"name": "NAME"}')
    return await handle.request(m.AddInstance(m.check_instance_name(data["name"]))), 201


async def remove_instance(handle: InstanceHandle, args: dict[str, str]) -> tuple[Any, int]:
    return await handle.request(m.RemoveInstance(m.check_instance_name(args["instance"]))), 200


async def list_control_planes(_: InstanceHandle, __: dict[str, str]) -> tuple[Any, int]:
    planes: ControlPlanes | None = current_app.extensions.get(CONTROL_PLANES)
    if planes is None:  # an instance's API served alone, by no control plane
        raise Error("not_found", "this server is not a control plane: it has none to list")
    return await planes.listing(), 200


ROUTES: tuple[Route, ...] = (
    Route("GET", "/instances", "List instances", list_instances, response="InstanceList"),
    Route(
        "POST",
        "/instances",
        "Add an instance: its join token, shown once (admin only)",
        add_instance,
        body="InstanceNew",
        response="JoinToken",
        status=201,
    ),
    Route("GET", "/instances/{instance}", "Get an instance", get_instance, response="Instance"),
    Route(
        "DELETE",
        "/instances/{instance}",
        "Remove an instance, revoking its agent's credential at once (admin only)",
        remove_instance,
        response="Deleted",
    ),
    Route(
        "GET",
        "/control-planes",
        "List the control planes sharing the cluster state, which one leads and which one answered",
        list_control_planes,
        response="ControlPlaneList",
    ),
)

SCHEMAS: dict[str, Any] = {
    "Instance": {
        "type": "object",
        "properties": {
            "name": _STR,
            "state": {"type": "string", "enum": ["connected", "away", "pending"]},
            "id": _nullable(_STR),
            "hostname": _nullable(_STR),
            "address": _nullable(_STR),
            "version": _nullable(_STR),
            "last_seen": _nullable(_NUM),
            "cpu_percent": _nullable(_NUM),
            "memory_used_bytes": _nullable(_INT),
            "memory_total_bytes": _nullable(_INT),
            "disk_free_bytes": _nullable(_INT),
            "disk_full": {"type": "boolean"},
            "log_lines_dropped": _INT,
            "services": {"type": "array", "items": {"$ref": "#/components/schemas/Service"}},
            "takes_services": {
                "type": "boolean",
                "description": "False: a deploy naming no instance places no new service "
                "on it (the control plane's own under `dployr up --no-local-services`)",
            },
        },
    },
    "InstanceList": {"type": "array", "items": {"$ref": "#/components/schemas/Instance"}},
    "InstanceNew": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"}
        },
        "required": ["name"],
        "additionalProperties": False,
    },
    "ControlPlane": {
        "type": "object",
        "properties": {
            "id": _STR,
            "url": {"type": "string", "description": "where agents reach it (--advertise)"},
            "started_at": _NUM,
            "last_seen": {
                "type": "number",
                "description": "when it last said it was alive (every 5 s while it runs)",
            },
            "leads": {"type": "boolean", "description": "it runs the cluster's background work"},
            "leader_since": _nullable(_NUM),
            "self": {"type": "boolean", "description": "it is the control plane that answered"},
        },
        "required": ["id", "url", "started_at", "last_seen", "leads", "leader_since", "self"],
    },
    "ControlPlaneList": {
        "type": "array",
        "items": {"$ref": "#/components/schemas/ControlPlane"},
    },
    "JoinToken": {
        "type": "object",
        "properties": {"instance": _STR, "token": _STR, "expires_at": _NUM},
    },
}
