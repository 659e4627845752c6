"""The REST routes of scheduled jobs: their runs, a run now, a run's log lines.

Declared as a table like :data:`dployr.gateway.api.ROUTES` (the app registers both, the
OpenAPI document is generated from both), each route one handle request.
"""

from __future__ import annotations

import zoneinfo
from typing import Any

from dployr.gateway.api import Param, Route, _int_arg
from dployr.gateway.responses import BadRequest
from dployr.protocol import messages as jm
from dployr.protocol.handle import InstanceHandle

_SCHEDULE = (
    "^(@hourly|@daily|@midnight|@weekly|@monthly|@yearly|@annually|"
    "(\\*|[1-5]?[0-9]) (\\*|1?[0-9]|2[0-3]) (\\*|[1-9]|1[0-9]|2[0-8]) (\\*|[1-9]|1[0-2])"
    " (\\*|[0-6]))$"
)
"""Schedules that are always valid: nicknames, and numbers or * in each field."""
_RUN_STATUS = ["running", "succeeded", "failed", "stopped", "skipped", "missed"]


async def get_job(handle: InstanceHandle, args: dict[str, str]) -> tuple[Any, int]:
    limit = _int_arg("limit", minimum=1) or 10
    return await handle.request(jm.GetJob(args["name"], min(limit, 1000))), 200


async def list_runs(handle: InstanceHandle, args: dict[str, str]) -> tuple[Any, int]:
    limit = _int_arg("limit", minimum=1) or 20
    return await handle.request(jm.ListRuns(args["name"], min(limit, 1000))), 200


async def run_now(handle: InstanceHandle, args: dict[str, str]) -> tuple[Any, int]:
    return await handle.request(jm.RunJob(args["name"])), 202


async def run_logs(handle: InstanceHandle, args: dict[str, str]) -> tuple[Any, int]:
    handle.check_service(args["name"])  # no such service is said before a bad run number
    if not args["run"].isdigit() or len(args["run"]) > 15:
        raise BadRequest(f"a run is a number, not {args['run'][:40]!r}")
    run = int(args["run"])
    after = _int_arg("after")
    limit = _int_arg("limit", minimum=1) or 1000
    return await handle.request(jm.ReadRunLogs(args["name"], run, after, min(limit, 10_000))), 200


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/services/{name}/job",
        "A job's schedule, next run and last runs",
        get_job,
        response="Job",
        query=(Param("limit", "integer", "at most this many runs (default 10)"),),
    ),
    Route(
        "GET",
        "/services/{name}/runs",
        "A job's runs, newest first",
        list_runs,
        response="JobRunList",
        query=(Param("limit", "integer", "at most this many (default 20)"),),
    ),
    Route(
        "POST",
        "/services/{name}/runs",
        "Start a run of a job now (as its concurrency allows)",
        run_now,
        response="JobRun",
        status=202,
    ),
    Route(
        "GET",
        "/services/{name}/runs/{run}/logs",
        "A run's output and dployr's lines about it",
        run_logs,
        response="LogPage",
        query=(
            Param("after", "integer", "the lines after this cursor"),
            Param("limit", "integer", "at most this many lines (default 1000)"),
        ),
    ),
)

_STR = {"type": "string"}
_INT = {"type": "integer"}
_NUM = {"type": "number"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


SCHEMAS: dict[str, Any] = {
    "JobRun": {
        "type": "object",
        "properties": {
            "id": _INT,
            "service": _STR,
            "deployment": _INT,
            "trigger": {"type": "string", "enum": ["schedule", "manual", "catch-up"]},
            "status": {"type": "string", "enum": _RUN_STATUS},
            "scheduled_at": _nullable(_NUM),
            "started_at": _nullable(_NUM),
            "ended_at": _nullable(_NUM),
            "exit_code": _nullable(_INT),
            "signal": _nullable(_INT),
            "message": _STR,
            "first_cursor": _nullable(_INT),
            "last_cursor": _nullable(_INT),
        },
    },
    "JobRunList": {"type": "array", "items": {"$ref": "#/components/schemas/JobRun"}},
    "Job": {
        "type": "object",
        "properties": {
            "name": _STR,
            "schedule": _nullable(_STR),
            "timezone": _STR,
            "concurrency": {"type": "string", "enum": ["forbid", "replace", "allow"]},
            "timeout": _NUM,
            "starting_deadline": _nullable(_NUM),
            "next_run": _nullable(_NUM),
            "active": {"type": "array", "items": _INT},
            "runs": {"type": "array", "items": {"$ref": "#/components/schemas/JobRun"}},
        },
    },
    "JobOptions": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "schedule": _nullable(
                {
                    "type": "string",
                    "pattern": _SCHEDULE,
                    "description": "5 cron fields (minute hour day-of-month month day-of-week)"
                    " or @hourly, @daily, @weekly, @monthly, @yearly; the schema shows plain"
                    " numbers and *, dployr takes ranges, lists and steps too",
                }
            ),
            "timezone": {
                "type": "string",
                "enum": sorted(zoneinfo.available_timezones() | {"UTC"}),
                "description": "an IANA time zone (default UTC)",
            },
            "concurrency": {"type": "string", "enum": ["forbid", "replace", "allow"]},
            "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 7 * 86400},
            "starting_deadline": _nullable(
                {"type": "number", "minimum": 0, "maximum": 366 * 86400}
            ),
        },
    },
}
"""The schemas of these routes' bodies, for the OpenAPI document."""
