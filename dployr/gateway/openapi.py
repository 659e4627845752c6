"""The OpenAPI 3 document of the REST API, generated from the route table.

Why one module of ~660 lines: it is one document, written as data.
"""

from __future__ import annotations

import functools
from typing import Any

from dployr import __version__
from dployr.gateway import access, api, instances, jobs, uploads
from dployr.models import (
    ENV_KEY,
    MAX_COMMAND,
    MAX_DESCRIPTION,
    NAME_PATTERN,
    NAME_RULE,
    RESERVED_ENV,
)

_STR = {"type": "string"}
_INT = {"type": "integer"}
_NUM = {"type": "number"}
_BOOL = {"type": "boolean"}

# What the request bodies take, as the validators in dployr.models and
# dployr.engine.sources check it. Where a rule is more than a schema can say (which remotes
# git may fetch, every git branch name), the schema states a plain subset that is always
# accepted, and the description says the rest.
NAME = {
    "type": "string",
    "pattern": f"^{NAME_PATTERN.pattern}$",
    "minLength": 1,
    "maxLength": 63,
    "description": "a service name: " + NAME_RULE,
}
_COMMAND = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_COMMAND,
    "pattern": "^[^\\x00]*[^\\s\\x00][^\\x00]*$",
    "description": "a shell command (not blank, no NUL)",
}
_REMOTE_URL = {
    "type": "string",
    "maxLength": 4096,
    "pattern": "^/[!-~]*$",
    "description": "a git URL (https://, ssh://, git://, file:///, user@host:path) or a "
    "local path; the schema shows absolute paths, the others are checked as a fetch would",
}
_BRANCH = {
    "type": "string",
    "pattern": "^[A-Za-z0-9_][A-Za-z0-9_-]{0,254}$",
    "description": "a git branch name (the schema shows the simple ones)",
}
_COMMIT = {"type": "string", "pattern": "^[0-9a-fA-F]{4,64}$", "description": "a commit id"}
_WORKING_DIR = {
    "type": "string",
    "pattern": "^(?:\\.|[A-Za-z0-9_-][A-Za-z0-9_/-]{0,254})$",
    "description": "a path inside the release folder (relative, no '..')",
}
_HEALTH_PATH = {"type": "string", "pattern": "^/[!-~]{0,1999}$"}
_ENV_KEY = {
    "type": "string",
    "pattern": f"^{ENV_KEY.pattern}$",
    "not": {"enum": sorted(RESERVED_ENV)},
}
_ENV_VALUE = {"type": "string", "maxLength": 65536, "pattern": "^[^\\x00]*$"}
_GRACE = {"type": "number", "minimum": 0, "maximum": 3600}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _array(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A request body's object: fields other than these are refused."""
    return {**_object(properties, required), "additionalProperties": False}


def _seconds(maximum: float, *, above_zero: bool = False) -> dict[str, Any]:
    low = {"exclusiveMinimum": 0} if above_zero else {"minimum": 0}
    return {"type": "number", **low, "maximum": maximum}


def _count(maximum: int, minimum: int = 1) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}

_SETTINGS = {
    "source": _ref("Source"),
    "run_cmd": _STR,
    "build_cmd": _nullable(_STR),
    "port": _nullable(_INT),
    "working_dir": _STR,
    "description": _STR,
    "health_check": _nullable(_STR),
    "stop_grace": _NUM,
    "health": _ref("HealthOptions"),
    "listen_fds": _BOOL,
    "rollout": {"type": "string", "enum": ["auto", "overlap", "stop-first"]},
    "restart": _ref("RestartPolicy"),
    "user": _nullable(_STR),
    "type": {"type": "string", "enum": ["web", "worker", "static", "job"]},
    "static": _ref("StaticOptions"),
    "job": _nullable(_ref("JobOptions")),
    "image": _nullable(_STR),
    "dockerfile": _nullable(_STR),
    "build_args": {"type": "object", "additionalProperties": _STR},
}
"""A service's settings as the API answers them."""

_SETTINGS_IN = {
    "run_cmd": _COMMAND,
    "build_cmd": _nullable({"anyOf": [_COMMAND, {"const": ""}]}),
    "port": _nullable(_PORT),
    "working_dir": _WORKING_DIR,
    "description": {"type": "string", "maxLength": MAX_DESCRIPTION},
    "health_check": _nullable(_HEALTH_PATH),
    "stop_grace": _GRACE,
    "health": _ref("HealthOptionsChange"),
    "listen_fds": _BOOL,
    "rollout": {"type": "string", "enum": ["auto", "overlap", "stop-first"]},
    "type": {"type": "string", "enum": ["web", "worker", "static", "job"]},
    "static": _ref("StaticOptions"),
}
"""The settings a request may give (a deploy's blueprint, a settings change)."""

SCHEMAS: dict[str, Any] = {
    "AgentJoin": _object(
        {"token": {"type": "string", "minLength": 1, "maxLength": 200}}, ("token",)
    ),
    "AgentCredential": _object({"instance": _STR, "credential": _STR}, ("instance", "credential")),
    "Error": _object(
        {"error": _object({"code": _STR, "message": _STR}, ("code", "message"))}, ("error",)
    ),
    "Source": _object(
        {"remote": _STR, "branch": _nullable(_STR), "commit": _nullable(_STR)}, ("remote",)
    ),
    "Remote": _closed(
        {"url": _REMOTE_URL, "branch": _nullable(_BRANCH), "commit": _nullable(_COMMIT)},
        ("url",),
    ),
    "Settings": _object(
        {
            "name": _STR,
            "settings": _ref("ServiceSettings"),
            "active": _nullable(_ref("ServiceSettings")),
            "pending": {"type": "array", "items": _STR},
            "data_dir": _STR,
        }
    ),
    "ServiceSettings": _object(_SETTINGS, ("source",)),
    "RestartPolicy": _object(
        {
            "mode": {"type": "string", "enum": ["always", "on-failure", "never"]},
            "delay": _NUM,
            "max_delay": _NUM,
            "max_restarts": _INT,
            "window": _NUM,
            "min_uptime": _NUM,
        }
    ),
    "HealthOptionsChange": _closed(
        {
            "kind": _nullable({"type": "string", "enum": ["http", "tcp", "command"]}),
            "command": _nullable({"anyOf": [_COMMAND, {"const": ""}]}),
            "interval": _seconds(86400, above_zero=True),
            "timeout": _seconds(3600, above_zero=True),
            "failures": _count(1000),
            "successes": _count(1000),
            "start_period": _seconds(3600),
            "restart_after": _nullable(_count(1000)),
            "webhook": _nullable({"type": "string", "pattern": "^https?://[!-~]{1,2000}$"}),
        }
    ),
    "HealthOptions": _object(
        {
            "kind": _nullable({"type": "string", "enum": ["http", "tcp", "command"]}),
            "command": _nullable(_STR),
            "interval": _NUM,
            "timeout": _NUM,
            "failures": _INT,
            "successes": _INT,
            "start_period": _NUM,
            "restart_after": _nullable(_INT),
            "webhook": _nullable(_STR),
        }
    ),
    "Rollback": _closed({"deployment": _nullable(_INT)}),
    "MetricPoint": _object(
        {
            "ts": _NUM,
            "resolution": {"type": "string", "enum": ["raw", "minute"]},
            "samples": _INT,
            "cpu_percent": _NUM,
            "cpu_percent_max": _NUM,
            "memory_rss_bytes": _NUM,
            "memory_rss_bytes_max": _NUM,
            "processes": _NUM,
            "processes_max": _NUM,
            "threads": _NUM,
            "threads_max": _NUM,
            "open_fds": _NUM,
            "open_fds_max": _NUM,
        }
    ),
    "MetricsPage": _object(
        {
            "name": _STR,
            "resolution": {"type": "string", "enum": ["raw", "minute"]},
            "points": _array("MetricPoint"),
        }
    ),
    "ServiceSample": _object(
        {
            "service": _STR,
            "ts": _NUM,
            "cpu_percent": _NUM,
            "memory_rss_bytes": _INT,
            "processes": _INT,
            "threads": _INT,
            "open_fds": _INT,
        }
    ),
    "LatestMetrics": _object({"samples": _array("ServiceSample")}),
    "SettingsChange": _closed(
        {
            **_SETTINGS_IN,
            "run_cmd": _COMMAND,
            "working_dir": _WORKING_DIR,
            "remote": _ref("Remote"),
            "job": _ref("JobOptions"),
        }
    ),
    "Blueprint": _closed(
        {
            "name": NAME,
            "instance": _nullable({**NAME, "description": "the instance to run it on"}),
            "source": {"type": "string", "enum": ["git", "local"]},
            "remote": {"anyOf": [_ref("Remote"), _REMOTE_URL]},
            **_SETTINGS_IN,
            # A container service (engine/podman.py): an image to pull, or a Dockerfile.
            "image": _nullable({"type": "string", "minLength": 1, "maxLength": 4096}),
            "dockerfile": _nullable(_WORKING_DIR),
            "build_args": {
                "type": "object",
                "propertyNames": _ENV_KEY,
                "additionalProperties": _ENV_VALUE,
            },
            "restart": _ref("RestartPolicyChange"),
            "job": _nullable(_ref("JobOptions")),
            "user": _nullable(
                {
                    "type": "string",
                    "pattern": "^([a-z_][a-z0-9_.-]{0,31}|[0-9]{1,10})$",
                    "description": "An account of the machine (name or id) the service runs "
                    "as, when dployr runs as root; one the machine does not have is refused.",
                }
            ),
            "env_vars": {
                "type": "object",
                "propertyNames": _ENV_KEY,
                "additionalProperties": _ENV_VALUE,
            },
            "secrets": {
                "type": "object",
                "propertyNames": _ENV_KEY,
                "additionalProperties": _ENV_VALUE,
            },
        },
        ("remote",),
    )
    # Every type but static needs a run command; a static site has none.
    | {
        "if": {"properties": {"type": {"const": "static"}}, "required": ["type"]},
        "then": {"not": {"required": ["run_cmd"]}},
        # (a container service may run its image's own command instead)
        "else": {
            "anyOf": [
                {"required": ["run_cmd"]},
                {"required": ["image"]},
                {"required": ["dockerfile"]},
            ]
        },
    },
    # A static site's publishing (dployr.staticsite); the schema shows the plain paths.
    "StaticOptions": _closed(
        {
            "publish_dir": _nullable(
                {"type": "string", "pattern": "^(\\.|[A-Za-z0-9_][A-Za-z0-9_-]{0,99})$"}
            ),
            "spa": _BOOL,
            "redirects": {
                "type": "array",
                "maxItems": 1000,
                "items": _closed(
                    {
                        "path": {"type": "string", "pattern": "^/[A-Za-z0-9/_-]{0,200}$"},
                        "to": {"type": "string", "pattern": "^/[A-Za-z0-9/_-]{0,200}$"},
                        "status": {"enum": [200, 301, 302, 303, 307, 308]},
                    },
                    ("path", "to"),
                ),
            },
            "headers": {
                "type": "array",
                "maxItems": 1000,
                "items": _closed(
                    {
                        "path": {"type": "string", "pattern": "^/[A-Za-z0-9/_*-]{0,200}$"},
                        "values": {
                            "type": "object",
                            "minProperties": 1,
                            "propertyNames": {"pattern": "^[A-Za-z0-9-]{1,100}$"},
                            "additionalProperties": {
                                "type": "string",
                                "pattern": "^[ -!#-\\[\\]-z|~]{0,200}$",
                            },
                        },
                    },
                    ("path", "values"),
                ),
            },
        }
    ),
    "RestartPolicyChange": _closed(
        {
            "mode": {"type": "string", "enum": ["always", "on-failure", "never"]},
            "delay": _seconds(3600),
            "max_delay": _seconds(3600),
            "max_restarts": _count(10_000, 0),
            "window": _seconds(86400),
            "min_uptime": _seconds(3600),
        }
    ),
    "Service": _object(
        {
            "name": _STR,
            "instance": _STR,
            "status": {
                "type": "string",
                "enum": ["deploying", "running", "stopped", "failed", "restarting"],
            },
            "health": {"type": "string", "enum": ["unknown", "healthy", "degraded"]},
            "pid": _nullable(_INT),
            "port": _nullable(_INT),
            "restarts": _INT,
            "deployment": _nullable(_INT),
            "description": _STR,
            "deploying": _nullable(_INT),
            "since": _NUM,
            "message": _STR,
            "created_at": _NUM,
            "last_deploy_at": _nullable(_NUM),
            "stale": _BOOL,
        }
    ),
    "ServiceList": _array("Service"),
    "Deleted": _object({"name": _STR}),
    "Deployment": _object(
        {
            "id": _INT,
            "service": _STR,
            "status": {
                "type": "string",
                "enum": ["pending", "fetching", "building", "starting", "succeeded", "failed"],
            },
            "settings": _ref("ServiceSettings"),
            "created_at": _NUM,
            "revision": _nullable(_STR),
            "finished_at": _nullable(_NUM),
            "exit_code": _nullable(_INT),
            "error": _nullable(_STR),
            "output_tail": {"type": "array", "items": _STR},
            "rollback_of": _nullable(_INT),
            "release": _nullable(_INT),
            "image": _nullable(_STR),
        }
    ),
    "DeploymentList": _array("Deployment"),
    "ImagesPruned": _object({"removed": {"type": "array", "items": _STR}}, ("removed",)),
    "KeyRotated": _object({"resealed": _INT, "key_file": _STR}, ("resealed", "key_file")),
    "EnvVar": _object({"key": _STR, "value": _STR, "secret": _BOOL}),
    "Env": _object({"name": _STR, "vars": _array("EnvVar"), "applies": _STR}),
    "EnvSet": _closed(
        {
            "values": {
                "type": "object",
                "propertyNames": _ENV_KEY,
                "additionalProperties": _ENV_VALUE,
            },
            "secret": _BOOL,
            "restart": _BOOL,
        },
        ("values",),
    ),
    "EnvUnset": _closed(
        {"keys": {"type": "array", "items": _ENV_KEY, "minItems": 1}, "restart": _BOOL},
        ("keys",),
    ),
    "LogLine": _object(
        {
            "cursor": _INT,
            "ts": _NUM,
            "stream": {"type": "string", "enum": ["stdout", "stderr", "build", "system"]},
            "line": _STR,
            "deployment": _nullable(_INT),
            "continued": _BOOL,
        }
    ),
    "LogPage": _object(
        {
            "name": _STR,
            "lines": _array("LogLine"),
            "first_cursor": _INT,
            "last_cursor": _INT,
        }
    ),
}

_ERRORS = {
    "400": "malformed request",
    "401": "missing or invalid API token",
    "403": "the token's scope does not allow it (dployr.gateway.access)",
    "404": "no such service",
    "409": "conflicts with the service's state",
    "413": "body larger than 1 MiB",
    "422": "invalid values",
    "503": "the instance cannot do it now (a part of it is stopped, the disk is full): "
    "try again later",
}


_PATH_PARAMETERS = {
    "{name}": "the service's name",
    "{instance}": "an instance's name (or, to get one, its id)",
    "{token}": "the API token's name",  # dployr.gateway.access
    "{run}": "a run of the job, by its number",  # dployr.gateway.jobs
}


_WHEN = {
    "type": "string",
    "pattern": "^(?:[0-9]{1,9}(?:s|m|h|d|w)|[0-9]{9,11})$",
    "description": "the schema shows durations and Unix times; RFC 3339 times are taken too",
}
_STREAM = "(?:stdout|stderr|build|system)"
_QUERY: dict[str, dict[str, Any]] = {
    "since": _WHEN,
    "until": _WHEN,
    "tail": {"type": "integer", "minimum": 0, "maximum": api.MAX_QUERY_INT},
    "after": {"type": "integer", "minimum": 0, "maximum": api.MAX_QUERY_INT},
    "limit": {"type": "integer", "minimum": 1, "maximum": api.MAX_QUERY_INT},
    "streams": {"type": "string", "pattern": f"^{_STREAM}(?:,{_STREAM})*$"},
}
"""The query parameters' schemas, by name (the same rules on every route)."""


def _operation(route: api.Route) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {
            "name": part[1:-1],
            "in": "path",
            "required": True,
            "schema": NAME if part == "{name}" else _STR,
            "description": _PATH_PARAMETERS[part],
        }
        for part in route.path.split("/")
        if part.startswith("{")
    ]
    parameters += [
        {
            "name": p.name,
            "in": "query",
            "schema": _QUERY.get(p.name, {"type": p.type}),
            "description": p.description,
        }
        for p in route.query
    ]
    responses: dict[str, Any] = {
        str(route.status): {
            "description": route.summary,
            "content": {"application/json": {"schema": _ref(route.response or "Error")}},
        }
    }
    for code, text in _ERRORS.items():
        responses[code] = {
            "description": text,
            "content": {"application/json": {"schema": _ref("Error")}},
        }
    operation: dict[str, Any] = {
        "summary": route.summary,
        "operationId": route.handler.__name__
        + ("_status" if route.path.endswith("/status") else ""),
        "parameters": parameters,
        "responses": responses,
    }
    if route.body is not None:
        operation["requestBody"] = {
            "required": route.body != "Blueprint",
            "content": {"application/json": {"schema": _ref(route.body)}},
        }
    return operation


_HANDSHAKE = {
    "Upgrade": {"type": "string", "enum": ["websocket"]},
    "Connection": {"type": "string", "enum": ["Upgrade"]},
    "Sec-WebSocket-Version": {"type": "string", "enum": ["13"]},
    "Sec-WebSocket-Key": {"type": "string", "pattern": "^[A-Za-z0-9+/]{21}[AQgw]==$"},
}
"""The headers of a WebSocket handshake (RFC 6455): a feed answers a plain GET with 400."""


def _feed(
    operation_id: str,
    summary: str,
    description: str,
    query: tuple[tuple[str, str], ...] = (),
    *,
    service: bool = True,
) -> dict[str, Any]:
    """A WebSocket feed as an OpenAPI GET: the upgrade, or the error that refused it."""
    parameters: list[dict[str, Any]] = []
    if service:
        parameters.append(
            {
                "name": "name",
                "in": "path",
                "required": True,
                "schema": NAME,
                "description": "the service's name",
            }
        )
    parameters += [
        {
            "name": name,
            "in": "query",
            "schema": (
                {"type": "string", "enum": ["0", "1", "true", "false"]}
                if name == "batch"
                else {"type": "integer", "minimum": 0, "maximum": api.MAX_QUERY_INT}
            ),
            "description": text,
        }
        for name, text in query
    ]
    parameters += [
        {"name": name, "in": "header", "required": True, "schema": schema}
        for name, schema in _HANDSHAKE.items()
    ]
    # 400 also answers a plain GET, which is not a WebSocket handshake.
    refusals = ("400", "401", "404", "422") if service else ("400", "401")
    return {
        "summary": summary,
        "description": "Upgrade to a WebSocket; one JSON object a message, with a type. "
        + description,
        "operationId": operation_id,
        "parameters": parameters,
        "responses": {
            "101": {"description": "switching to the WebSocket feed"},
            **{
                code: {
                    "description": _ERRORS[code],
                    "content": {"application/json": {"schema": _ref("Error")}},
                }
                for code in refusals
            },
        },
    }


FEEDS: dict[str, dict[str, Any]] = {
    "/services/{name}/logs/stream": _feed(
        "follow_logs",
        "Follow a service's log",
        '{"type": "logs", "lines": [...]} for the lines that came together, each '
        '{"type": "log", "cursor", "ts", "stream", "line", "deployment", "continued"}: '
        "history after `cursor` (or the last `tail` lines), then live lines, with no gap or "
        'duplicate at the seam; {"type": "gap", "missed", "from", "to"} when the client fell '
        "behind (read those cursors over REST). With `batch=0`, one `log` message a line.",
        (
            ("cursor", "send the lines after this cursor"),
            ("tail", "start with the last N lines (default 0: live lines only)"),
            ("batch", "1 (default): many lines a message (`logs`); 0: one `log` message each"),
        ),
    ),
    "/services/{name}/metrics/stream": _feed(
        "follow_metrics",
        "Follow a service's CPU and memory samples",
        '{"type": "metrics", "service", "ts", "cpu_percent", "memory_rss_bytes", '
        '"processes", "threads", "open_fds"} per sample; {"type": "gap", "missed", "from", '
        '"to"} when the client fell behind.',
    ),
    "/events": _feed(
        "follow_events",
        "Follow every service's status, health and deployment changes",
        '{"type": "status" | "health" | "deployment", "service", "instance", ..., "ts"} per '
        'change; {"type": "disk", "instance", "full", "ts"} when the data dir\'s disk fills '
        'up or has room again; {"type": "supervision", "kind", "supervisor", "child", '
        '"incarnation", "message"} per supervision report; {"type": "gap", "missed", '
        '"from", "to"} when the client fell behind.',
        service=False,
    ),
}
"""The WebSocket feeds (``dployr.gateway.feeds``), documented beside the REST routes."""


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


AGENT_DOOR: dict[str, dict[str, Any]] = {
    "/agent/join": {
        "post": {
            "summary": "An agent joins: its join token exchanged for its credential",
            "description": "`dployr agent --join URL --token TOKEN` calls it once. No API "
            "token: the join token in the body authenticates it (from `POST /instances`, "
            "single use, expiring). The credential answered is the agent's bearer token on "
            "the agent channel (`/agent`), and on nothing else. docs/agent-protocol.md.",
            "operationId": "agent_join",
            "security": [],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("AgentJoin")}},
            },
            "responses": {
                "200": _json(_ref("AgentCredential"), "the instance's name and credential"),
                "400": _json(_ref("Error"), 'the body is not {"token": JOIN_TOKEN}'),
                "401": _json(_ref("Error"), "the join token is unknown, spent or expired"),
                "413": _json(_ref("Error"), _ERRORS["413"]),
            },
        }
    },
    "/agent": {
        "get": {
            **_feed(
                "agent_channel",
                "An agent's channel to its control plane",
                "Its bearer token is an agent credential (from `/agent/join`), never an API "
                'token. Frames, each a JSON object with a "type": the agent sends `hello` '
                "first, the control plane answers `hello_ack`; then `call` / `result` / "
                "`ack`, `update`, `subscribe` / `items` / `gap` / `ended` / `unsubscribe`, "
                "`ping` / `pong`, `control_planes` (every control plane sharing the cluster: "
                "the agent dials each) (docs/agent-protocol.md). Close codes: 1008 a malformed "
                "frame, 4403 credential revoked, 4408 silent too long, 4409 replaced.",
                service=False,
            ),
            "security": [{"agent": []}],
        }
    },
}
"""The agents' door (``dployr.gateway.agents``): apart from the user API, its own token."""
AGENT_DOOR["/agent"]["get"]["responses"]["401"]["description"] = (
    "missing, unknown or revoked agent credential (an API token is none)"
)


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.0 document for every route under ``/api/v1``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in api.ROUTES + access.ROUTES + jobs.ROUTES + instances.ROUTES:
        paths.setdefault(api.PREFIX + route.path, {})[route.method.lower()] = _operation(route)
    for path, operation in FEEDS.items():
        paths[api.PREFIX + path] = {"get": operation}
    for path, operations in AGENT_DOOR.items():
        paths[api.PREFIX + path] = operations
    paths[uploads.UPLOADS_PATH] = {"post": uploads.OPERATION}
    paths[api.PREFIX + "/openapi.json"] = {
        "get": {
            "summary": "This document",
            "operationId": "openapi",
            "responses": {"200": {"description": "the OpenAPI document"}},
        }
    }
    paths["/healthz"] = {
        "get": {
            "summary": "Liveness (no token needed)",
            "operationId": "healthz",
            "security": [],
            "responses": {"200": {"description": "the daemon is up"}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "dployr", "version": __version__},
        "servers": [{"url": "/"}],
        "components": {
            "schemas": {
                **SCHEMAS,
                **access.SCHEMAS,
                **jobs.SCHEMAS,
                **instances.SCHEMAS,
                **uploads.SCHEMAS,
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "agent": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an agent's credential (POST /api/v1/agent/join)",
                },
            },
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
