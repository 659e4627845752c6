"""The Quart (on trio) application: REST routes, auth, JSON errors, the OpenAPI document."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from dployr import __version__
from dployr.engine.instance import InstanceHandle
from dployr.engine.messages import GetInstance, InstanceInfo
from dployr.engine.metrics_policy import prometheus_text
from dployr.errors import DployrError
from dployr.gateway import api, dashboard, feeds, openapi
from dployr.gateway.responses import (
    MAX_BODY,
    TokenCheck,
    bearer_token,
    error_response,
    json_response,
    status_for,
)

log = logging.getLogger("dployr.gateway")


def _view(route: api.Route, handle: InstanceHandle) -> Callable[..., Awaitable[Response]]:
    async def view(**args: str) -> Response:
        result, status = await route.handler(handle, args)
        return json_response(result, status)

    view.__name__ = f"{route.method.lower()}_{route.path}"
    return view


def _disk_text(info: InstanceInfo) -> str:
    """The data dir's disk condition, in Prometheus' text format."""
    where = json.dumps(info.name)  # a label value, escaped as Prometheus wants
    return (
        "# HELP dployr_disk_full 1 while the data dir's disk is full (log history paused)\n"
        "# TYPE dployr_disk_full gauge\n"
        f"dployr_disk_full{{instance={where}}} {int(info.disk_full)}\n"
        "# HELP dployr_log_lines_dropped_total Log lines not written to history (disk full)\n"
        "# TYPE dployr_log_lines_dropped_total counter\n"
        f"dployr_log_lines_dropped_total{{instance={where}}} {info.log_lines_dropped}\n"
    )


def create_app(
    handle: InstanceHandle, check_token: TokenCheck, *, dashboard_key: bytes | None = None
) -> QuartTrio:
    """The gateway's application, talking to ``handle`` and checking tokens with ``check_token``."""
    app = QuartTrio("dployr", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    if dashboard_key is not None:
        app.config["DASHBOARD_KEY"] = dashboard_key
    # The dashboard's session check runs first: it may authenticate the request.
    dashboard.register(app, handle, check_token)

    for route in api.ROUTES:
        app.add_url_rule(
            route.rule,
            endpoint=f"{route.method} {route.path}",
            view_func=_view(route, handle),
            methods=[route.method],
        )

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok", "version": __version__})

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Every running service's last sample, in Prometheus text format (token needed)."""
        token = bearer_token(request.headers, request.args)
        if not g.get("authenticated") and (token is None or not check_token(token)):
            return error_response(401, "unauthorized", "missing or invalid API token")
        text = prometheus_text(
            handle.instance_name, handle.latest_samples(), handle.latest_machine()
        )
        text += _disk_text(await handle.request(GetInstance()))
        return Response(text, content_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get(api.PREFIX + "/openapi.json")
    async def openapi_document() -> Response:
        return json_response(openapi.document())

    @app.before_request
    async def authenticate() -> Response | None:
        if request.path == "/healthz" or not request.path.startswith("/api/"):
            return None
        if g.get("authenticated"):
            return None
        token = bearer_token(request.headers, request.args)
        if token is None:
            return error_response(
                401, "unauthorized", "missing API token: send Authorization: Bearer <token>"
            )
        if not check_token(token):
            return error_response(401, "unauthorized", "invalid API token")
        return None

    feeds.register(app, handle, check_token)

    @app.errorhandler(DployrError)
    async def domain_error(error: DployrError) -> Response:
        status, code = status_for(error)
        if status >= 500:
            log.error("request failed: %s", error)
        return error_response(status, code, " ".join(str(error).split()))

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        messages = {
            404: f"no such route: {request.method} {request.path}",
            405: f"method {request.method} is not allowed here",
            413: f"the request body is larger than {MAX_BODY // 1024} KiB",
        }
        message = messages.get(status, error.description or error.name)
        code = error.name.lower().replace(" ", "_")
        allow = getattr(error, "valid_methods", None)  # a 405's Allow header (gateway/responses)
        return error_response(status, code, message, allow=allow)

    @app.errorhandler(Exception)
    async def internal_error(error: Exception) -> Response:
        log.exception("internal error")
        return error_response(500, "internal", f"internal error: {type(error).__name__}")

    return app
