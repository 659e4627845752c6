"""The OpenAPI 3 document of the REST API, generated from the route table."""

from __future__ import annotations

import functools
from typing import Any

from dployr import __version__
from dployr.gateway import api

_STR = {"type": "string"}
_INT = {"type": "integer"}
_NUM = {"type": "number"}
_BOOL = {"type": "boolean"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _array(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


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
}

SCHEMAS: dict[str, Any] = {
    "Error": _object(
        {"error": _object({"code": _STR, "message": _STR}, ("code", "message"))}, ("error",)
    ),
    "Source": _object(
        {"remote": _STR, "branch": _nullable(_STR), "commit": _nullable(_STR)}, ("remote",)
    ),
    "Remote": _object(
        {"url": _STR, "branch": _nullable(_STR), "commit": _nullable(_STR)}, ("url",)
    ),
    "Settings": _object(
        {
            "name": _STR,
            "settings": _ref("ServiceSettings"),
            "active": _nullable(_ref("ServiceSettings")),
            "pending": {"type": "array", "items": _STR},
        }
    ),
    "ServiceSettings": _object(_SETTINGS, ("source", "run_cmd")),
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
    "Rollback": _object({"deployment": _nullable(_INT)}),
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
    "SettingsChange": _object(
        {**{k: v for k, v in _SETTINGS.items() if k != "source"}, "remote": _ref("Remote")}
    ),
    "Blueprint": _object(
        {
            "name": _STR,
            "description": _STR,
            "source": {"type": "string", "enum": ["git", "local"]},
            "remote": _ref("Remote"),
            "build_cmd": _nullable(_STR),
            "run_cmd": _STR,
            "port": _nullable(_INT),
            "working_dir": _STR,
            "health_check": _nullable(_STR),
            "stop_grace": _NUM,
            "env_vars": {"type": "object", "additionalProperties": _STR},
            "secrets": {"type": "object", "additionalProperties": _STR},
        },
        ("remote", "run_cmd"),
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
        }
    ),
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
    "DeploymentList": _array("Deployment"),
    "KeyRotated": _object({"resealed": _INT, "key_file": _STR}, ("resealed", "key_file")),
    "EnvVar": _object({"key": _STR, "value": _STR, "secret": _BOOL}),
    "Env": _object({"name": _STR, "vars": _array("EnvVar"), "applies": _STR}),
    "EnvSet": _object(
        {
            "values": {"type": "object", "additionalProperties": _STR},
            "secret": _BOOL,
            "restart": _BOOL,
        },
        ("values",),
    ),
    "EnvUnset": _object({"keys": {"type": "array", "items": _STR}, "restart": _BOOL}, ("keys",)),
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
    "Instance": _object(
        {
            "id": _STR,
            "name": _STR,
            "hostname": _STR,
            "version": _STR,
            "services": _array("Service"),
            "cpu_percent": _nullable(_NUM),
            "memory_used_bytes": _nullable(_INT),
            "memory_total_bytes": _nullable(_INT),
            "load": _nullable({"type": "array", "items": _NUM}),
        }
    ),
    "InstanceList": _array("Instance"),
}

_ERRORS = {
    "400": "malformed request",
    "401": "missing or invalid API token",
    "404": "no such service",
    "409": "conflicts with the service's state",
    "413": "body larger than 1 MiB",
    "422": "invalid values",
}


def _operation(route: api.Route) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {
            "name": part[1:-1],
            "in": "path",
            "required": True,
            "schema": _STR,
            "description": "the service's name" if part == "{name}" else "an instance id or name",
        }
        for part in route.path.split("/")
        if part.startswith("{")
    ]
    parameters += [
        {"name": p.name, "in": "query", "schema": {"type": p.type}, "description": p.description}
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
                "schema": _STR,
                "description": "the service's name",
            }
        )
    parameters += [
        {"name": name, "in": "query", "schema": _INT, "description": text} for name, text in query
    ]
    refusals = ("400", "401", "404", "422") if service else ("401",)
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
        '{"type": "log", "cursor", "ts", "stream", "line", "deployment", "continued"} for a '
        "line: history after `cursor` (or the last `tail` lines), then live lines, with no "
        'gap or duplicate at the seam; {"type": "gap", "from", "to"} when the client fell '
        "behind (read those cursors over REST). With `batch=1`, lines come many to a "
        '{"type": "logs", "lines": [...]} message instead.',
        (
            ("cursor", "send the lines after this cursor"),
            ("tail", "start with the last N lines (default 0: live lines only)"),
            ("batch", "1: many lines a message (`logs`); 0 (default): one `log` message each"),
        ),
    ),
    "/services/{name}/metrics/stream": _feed(
        "follow_metrics",
        "Follow a service's CPU and memory samples",
        '{"type": "metrics", "service", "ts", "cpu_percent", "memory_rss_bytes", '
        '"processes", "threads", "open_fds"} per sample; {"type": "gap", "missed"} when '
        "the client fell behind.",
    ),
    "/events": _feed(
        "follow_events",
        "Follow every service's status, health and deployment changes",
        '{"type": "status" | "health" | "deployment", "service", "instance", ..., "ts"} per '
        'change; {"type": "gap", "missed"} when the client fell behind.',
        service=False,
    ),
}
"""The WebSocket feeds (``dployr.gateway.feeds``), documented beside the REST routes."""


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.0 document for every route under ``/api/v1``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in api.ROUTES:
        paths.setdefault(api.PREFIX + route.path, {})[route.method.lower()] = _operation(route)
    for path, operation in FEEDS.items():
        paths[api.PREFIX + path] = {"get": operation}
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
        "openapi": "3.0.3",
        "info": {"title": "dployr", "version": __version__},
        "servers": [{"url": "/"}],
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
