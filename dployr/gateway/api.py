"""The REST API under ``/api/v1``: each route turns HTTP into one handle request and back.

Routes are declared once, in :data:`ROUTES`; the app registers them from that table and
the OpenAPI document is generated from it, so the two cannot drift apart.

Why one module of ~480 lines: it is the route table, one short handler per REST route,
read in one place with the OpenAPI document generated from it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from quart import Request, request

from dployr import blueprint, serde
from dployr.errors import SpecError
from dployr.gateway.responses import BadRequest, EncodedJSON, encode_json
from dployr.logs.values import check_streams
from dployr.models import check_env_key
from dployr.protocol import messages as m
from dployr.protocol.handle import InstanceHandle
from dployr.timeparse import parse_since

PREFIX = "/api/v1"

Handler = Callable[[InstanceHandle, dict[str, str]], Awaitable[tuple[Any, int]]]


@attrs.frozen
class Param:
    """A query parameter, for the OpenAPI document."""

    name: str
    type: str
    description: str


@attrs.frozen
class Route:
    """One REST route: method, path (OpenAPI style), handler, and its documentation."""

    method: str
    path: str
    summary: str
    handler: Handler
    body: str | None = None
    """The name of the request body's schema in the OpenAPI document."""
    response: str | None = None
    """The name of the response schema."""
    status: int = 200
    query: tuple[Param, ...] = ()

    @property
    def rule(self) -> str:
        """The path as a Quart URL rule."""
        return PREFIX + self.path.replace("{", "<").replace("}", ">")


MAX_NESTING = 32
"""The deepest a request body's JSON may nest (objects and arrays); no API body needs more."""


async def json_body(req: Request, *, required: bool = True) -> Any:
    """The request's JSON body, or BadRequest.

    Refused with BadRequest, never a 500: malformed JSON, nesting deeper than
    :data:`MAX_NESTING`, a number of more than 4300 digits, and text that is not Unicode
    (a lone surrogate such as ``"\\ud800"``, which nothing could store or show).
    """
    raw = await req.get_data(as_text=False)
    if not raw.strip():
        if required:
            raise BadRequest("this request needs a JSON body")
        return None
    try:
        data = json.loads(raw)
    except RecursionError:
        raise BadRequest(f"the JSON body nests deeper than {MAX_NESTING} levels") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadRequest(f"malformed JSON body: {getattr(error, 'msg', error)}") from None
    except ValueError:  # Python refuses to read a number of more than 4300 digits
        raise BadRequest("the JSON body holds a number too long to be read") from None
    _check_plain(data, 0)
    return data


def _check_plain(data: Any, depth: int) -> None:
    """Refuse JSON that nests too deep or holds text that is not valid Unicode."""
    if isinstance(data, str):
        if not data.isascii():
            try:
                data.encode()
            except UnicodeEncodeError:
                raise BadRequest(
                    "the JSON body holds text that is not valid Unicode (a lone surrogate)"
                ) from None
        return
    if not isinstance(data, dict | list):
        return
    if depth >= MAX_NESTING:
        raise BadRequest(f"the JSON body nests deeper than {MAX_NESTING} levels")
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for key, value in items:
        _check_plain(key, depth + 1)
        _check_plain(value, depth + 1)


MAX_QUERY_INT = 2**53 - 1
"""The largest whole number a query parameter takes (JSON's exact integers)."""


def _int_arg(name: str, *, minimum: int = 0) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    shown = raw if len(raw) <= 40 else raw[:40] + "…"
    if len(raw) > 20 or not raw.strip().lstrip("+-").isdigit():
        raise BadRequest(f"query parameter {name} must be a whole number, not {shown!r}")
    value = int(raw)
    if value < minimum:
        raise BadRequest(f"query parameter {name} must be at least {minimum}")
    if value > MAX_QUERY_INT:
        raise BadRequest(f"query parameter {name} must be at most {MAX_QUERY_INT}")
    return value


def _bool_arg(name: str) -> bool:
    raw = request.args.get(name, "").lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise BadRequest(f"query parameter {name} must be true or false, not {raw!r}")


# -- handlers --------------------------------------------------------------------------


MAX_LOG_PAGE = 1 << 20
"""A page of log lines ends once its lines hold this many characters (at least one line is
sent): reading a huge line back costs the daemon about this much, not the line's size. Read
on with ``after`` = the page's last cursor."""

_listed: dict[int, tuple[int, EncodedJSON]] = {}
"""The last list answered per instance handle, with the generation it was made at."""


async def list_services(handle: InstanceHandle, _: dict[str, str]) -> tuple[Any, int]:
    # Dashboards and scripts ask for the list often and it seldom changes: the encoded
    # answer is reused until the instance's generation says a service changed.
    generation = handle.generation
    cached = _listed.get(id(handle))
    if cached is not None and cached[0] == generation:
        return cached[1], 200
    body = encode_json(await handle.request(m.ListServices()))
    _listed[id(handle)] = (generation, body)
    return body, 200


async def get_service(handle: InstanceHandle, args: dict[str, str]) -> tuple[Any, int]:
    return await handle.request(m.GetService(args["name"])), 200


async def delete_service(handle: InstanceHandle, args: dict[str, str]) -> tuple[Any, int]:
    purge_image = _bool_arg("purge_image")
    return await handle.request(
        m.Delete(args["name"], purge=_bool_arg("purge"), purge_image=purge_image)
    ), 200


async def prune_images(handle: InstanceHandle, _: dict[str, str]) -> tuple[Any, int]:
    return await handle.request(m.PruneImages()), 200


async def deploy(handle: InstanceHandle, args: dict[str, str]) -> tuple[Any, int]:
    name = args["name"]
    data = await json_body(request, required=False)
    if data is None or data == {}:
        deployment = await handle.request(m.Deploy(name))
    else:
        plan = blueprint.from_data(data)
        if plan.name is not None and plan.name != name:
            raise SpecError(f"the body names service {plan.name!r} but the path names {name!r}")
        deployment = await handle.request(
            m.Deploy(name, plan.settings, dict(plan.env_vars), dict(plan.secrets), plan.instance)
        )
    return deployment, 202


async def start(handle: InstanceHandle, args: dict[str, str]) -> tuple[Any, int]:
    return await handle.request(m.Start(args["name"])), 200


async def stop(handle: InstanceHandle, args: dict[str, str]) -> tuple[Any, int]:
    return await handle.request(m.Stop(args["name"])), 200


async def restart(handle: InstanceHandle, args: dict[str, str]) -> tuple[Any, int]:
    return await handle.request(m.Restart(args["name"], hard=_bool_arg("hard"))), 200


async def rollback(handle: InstanceHandle, args: dict[str, str]) -> tuple[Any, int]:
    data = await json_body(request, required=False)
    target = None
    if data is not None:
        if not isinstance(data, dict) or set(data) - {"deployment"}:
            raise SpecError('the body must be {"deployment": ID} or empty')
        target = data.get("deployment")
        if target is not None and (isinstance(target, bool) or not isinstance(target, int)):
            raise SpecError("deployment must be a deployment id (a whole number)")
    return await handle.request(m.Rollback(args["name"], target)), 202


async def read_metrics(handle: InstanceHandle, args: dict[str, str]) -> tuple[Any, int]:
    now = time.time()
    since = parse_since(request.args.get("since") or "1h", now)
    until_text = request.args.get("until")
    until = parse_since(until_text, now) if until_text else None
    return await handle.request(m.ReadMetrics(args["name"], since, until)), 200


async def latest_metrics(handle: InstanceHandle, _: dict[str, str]) -> tuple[Any, int]:
    # The services list shows every service's CPU and memory: one request for all of them
    # per refresh, however many services there are.
    return {"samples": handle.latest_samples()}, 200


async def get_settings(handle: InstanceHandle, args: dict[str, str]) -> tuple[Any, int]:
    return await handle.request(m.GetSettings(args["name"])), 200


_CLEARABLE = ("port", "build_cmd", "health_check", "user")
_SETTING_FIELDS = (
    "run_cmd",
    "build_cmd",
    "port",
    "working_dir",
    "description",
    "health_check",
    "stop_grace",
    "health",
    "restart",
    "listen_fds",
    "rollout",
    "user",
    "job",
    "type",
    "static",
)


async def update_settings(handle: InstanceHandle, args: dict[str, str]) -> tuple[Any, int]:
    data = await json_body(request)
    if not isinstance(data, dict):
        raise SpecError("the settings body must be a JSON object")
    unknown = set(data) - set(_SETTING_FIELDS) - {"remote"}
    if unknown:
        raise SpecError(f"unknown settings: {', '.join(sorted(unknown))}")
    clear = frozenset(k for k in _CLEARABLE if k in data and data[k] is None)
    for key, value in data.items():
        if value is None and key not in _CLEARABLE:
            raise SpecError(f"{key} cannot be removed, only changed")
    source = None
    if data.get("remote") is not None:
        source = blueprint.source_of(data["remote"])  # checked by the instance
    plain = {k: v for k, v in data.items() if v is not None and k != "remote"}
    if "type" in plain:  # the message's own "type" is its tag on the wire
        plain["service_type"] = plain.pop("type")
    change = attrs.evolve(serde.structure(plain, m.SettingsChange), clear=clear, source=source)
    return await handle.request(m.UpdateSettings(args["name"], change)), 200


async def list_env(handle: InstanceHandle, args: dict[str, str]) -> tuple[Any, int]:
    return await handle.request(m.ListEnv(args["name"])), 200


async def set_env(handle: InstanceHandle, args: dict[str, str]) -> tuple[Any, int]:
    data = await json_body(request)
    if not isinstance(data, dict) or not isinstance(data.get("values"), dict):
        raise SpecError('the body must be {"values": {"KEY": "value", ...}}')
    unknown = set(data) - {"values", "secret", "restart"}
    if unknown:
        raise SpecError(f"unknown fields: {', '.join(sorted(unknown))}")
    values = data["values"]
    for key, value in values.items():
        check_env_key(key)
        if not isinstance(value, str):
            raise SpecError(f"the value of {key} must be a string")
    secret, restart_now = data.get("secret", False), data.get("restart", False)
    if not isinstance(secret, bool) or not isinstance(restart_now, bool):
        raise SpecError("secret and restart must be true or false")
    reply = await handle.request(m.SetEnv(args["name"], values, secret, restart_now))
    return reply, 200


async def unset_env(handle: InstanceHandle, args: dict[str, str]) -> tuple[Any, int]:
    data = await json_body(request)
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or not keys:
        raise SpecError('the body must be {"keys": ["KEY", ...]}')
    restart_now = data.get("restart", False)
    if not isinstance(restart_now, bool):
        raise SpecError("restart must be true or false")
    for key in keys:
        check_env_key(key)
    return await handle.request(m.UnsetEnv(args["name"], tuple(keys), restart_now)), 200


async def read_logs(handle: InstanceHandle, args: dict[str, str]) -> tuple[Any, int]:
    tail = _int_arg("tail")
    after = _int_arg("after")
    limit = _int_arg("limit", minimum=1) or 1000
    since_text = request.args.get("since")
    since = parse_since(since_text, time.time()) if since_text else None
    streams_text = request.args.get("streams")
    streams = check_streams(streams_text.split(",")) if streams_text else None
    if _bool_arg("build"):
        streams = frozenset({"build"})
    if tail is None and after is None and since is None:
        tail = 100
    query = m.ReadLogs(
        args["name"], tail, after, since, streams, min(limit, 10_000), max_text=MAX_LOG_PAGE
    )
    return await handle.request(query), 200


async def list_deployments(handle: InstanceHandle, args: dict[str, str]) -> tuple[Any, int]:
    limit = _int_arg("limit", minimum=1) or 50
    return await handle.request(m.ListDeployments(args["name"], min(limit, 1000))), 200


async def rotate_key(handle: InstanceHandle, _: dict[str, str]) -> tuple[Any, int]:
    return await handle.request(m.RotateKey()), 200


_NAME = "the service's name"
ROUTES: tuple[Route, ...] = (
    Route("GET", "/services", "List services", list_services, response="ServiceList"),
    Route("GET", "/services/{name}", "Get a service", get_service, response="Service"),
    Route(
        "DELETE",
        "/services/{name}",
        "Delete a service (its data folder stays unless purge)",
        delete_service,
        response="Deleted",
        query=(
            Param("purge", "boolean", "also remove the service's data folder"),
            Param("purge_image", "boolean", "also remove its container images"),
        ),
    ),
    Route(
        "POST",
        "/services/{name}/deploy",
        "Create or update a service, then deploy it (answers at once)",
        deploy,
        body="Blueprint",
        response="Deployment",
        status=202,
    ),
    Route("POST", "/services/{name}/start", "Start a service", start, response="Service"),
    Route("POST", "/services/{name}/stop", "Stop a service", stop, response="Service"),
    Route(
        "POST",
        "/services/{name}/restart",
        "Restart a service (without downtime when it has a port)",
        restart,
        response="Service",
        query=(Param("hard", "boolean", "stop, then start, instead"),),
    ),
    Route(
        "POST",
        "/services/{name}/rollback",
        "Switch to a kept release without rebuilding (default: the previous one)",
        rollback,
        body="Rollback",
        response="Deployment",
        status=202,
    ),
    Route(
        "GET",
        "/services/{name}/metrics",
        "CPU and memory over time",
        read_metrics,
        response="MetricsPage",
        query=(
            Param("since", "string", "from when: 15m, 1h, 24h, 7d or RFC 3339 (default 1h)"),
            Param("until", "string", "until when (default now)"),
        ),
    ),
    Route(
        "GET",
        "/metrics/latest",
        "The last CPU and memory sample of every running service",
        latest_metrics,
        response="LatestMetrics",
    ),
    Route("GET", "/services/{name}/status", "A service's status", get_service, response="Service"),
    Route(
        "GET",
        "/services/{name}/settings",
        "A service's settings",
        get_settings,
        response="Settings",
    ),
    Route(
        "PATCH",
        "/services/{name}/settings",
        "Change settings (applied at the next deploy)",
        update_settings,
        body="SettingsChange",
        response="Settings",
    ),
    Route("GET", "/services/{name}/env", "List environment variables", list_env, response="Env"),
    Route(
        "PUT",
        "/services/{name}/env",
        "Set environment variables",
        set_env,
        body="EnvSet",
        response="Env",
    ),
    Route(
        "POST",
        "/services/{name}/env/unset",
        "Remove environment variables",
        unset_env,
        body="EnvUnset",
        response="Env",
    ),
    Route(
        "GET",
        "/services/{name}/logs",
        "Read log history",
        read_logs,
        response="LogPage",
        query=(
            Param("tail", "integer", "the last N lines (default 100)"),
            Param("after", "integer", "the lines after this cursor"),
            Param("since", "string", "the lines from a time on: 10m, 2h, or RFC 3339"),
            Param("streams", "string", "comma-separated: stdout,stderr,build,system"),
            Param("build", "boolean", "build output only"),
            Param("limit", "integer", "at most this many lines (default 1000)"),
        ),
    ),
    Route(
        "GET",
        "/services/{name}/deployments",
        "List deployments, newest first",
        list_deployments,
        response="DeploymentList",
        query=(Param("limit", "integer", "at most this many (default 50)"),),
    ),
    Route(
        "POST",
        "/secrets/rotate-key",
        "Seal every secret under a new master key",
        rotate_key,
        response="KeyRotated",
    ),
    Route(
        "POST",
        "/images/prune",
        "Remove the container images no kept release runs (admin only)",
        prune_images,
        response="ImagesPruned",
    ),
)
