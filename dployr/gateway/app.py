"""The Quart (on trio) application: REST routes, auth, JSON errors, the OpenAPI document."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from quart import Response, g, request, websocket
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from dployr import __version__
from dployr.errors import DployrError
from dployr.gateway import access, agents, api, dashboard, feeds, instances, jobs, openapi
from dployr.gateway import uploads as gateway_uploads
from dployr.gateway.access import Tokens
from dployr.gateway.prometheus import disk_text, prometheus_text
from dployr.gateway.responses import (
    MAX_BODY,
    bearer_token,
    error_of,
    error_response,
    json_response,
    status_for,
)
from dployr.protocol.handle import InstanceHandle
from dployr.protocol.messages import GetInstance, ListServices
from dployr.protocol.wire import AgentDoor

if TYPE_CHECKING:
    from dployr.gateway.instances import ControlPlanes
    from dployr.gateway.uploads import UploadStore

log = logging.getLogger("dployr.gateway")


def _view(route: api.Route, handle: InstanceHandle) -> Callable[..., Awaitable[Response]]:
    async def view(**args: str) -> Response:
        result, status = await route.handler(handle, args)
        return json_response(result, status)

    view.__name__ = f"{route.method.lower()}_{route.path}"
    return view


def create_app(
    handle: InstanceHandle,
    tokens: Tokens,
    *,
    dashboard_key: bytes | None = None,
    door: AgentDoor | None = None,
    uploads: UploadStore | None = None,
    control_planes: ControlPlanes | None = None,
) -> QuartTrio:
    """The gateway's application, talking to ``handle``; ``tokens`` checks API tokens,
    remembers logged-out sessions and keeps the audit log; ``door``, if any, lets agents
    join and dial in (dployr/gateway/agents.py); ``uploads``, if any, takes the folders the CLI
    uploads (dployr/gateway/uploads.py); ``control_planes``, if any, lists the cluster's
    control planes (a ``dployr up``'s: dployr/cluster/peers.py)."""
    app = QuartTrio("dployr", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.extensions["dployr.tokens"] = tokens
    if control_planes is not None:
        app.extensions[instances.CONTROL_PLANES] = control_planes
    if dashboard_key is not None:
        app.config["DASHBOARD_KEY"] = dashboard_key
    # The dashboard's session check runs first: it may authenticate the request.
    dashboard.register(app, handle, tokens)

    for route in api.ROUTES + access.ROUTES + jobs.ROUTES + instances.ROUTES:
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
        # In a cluster, each service's samples are labelled with the instance it runs on.
        placed = {s.name: s.instance for s in await handle.request(ListServices())}
        text = prometheus_text(
            handle.instance_name, handle.latest_samples(), handle.latest_machine(), placed
        )
        info = await handle.request(GetInstance())
        text += disk_text(
            info.name, disk_full=info.disk_full, log_lines_dropped=info.log_lines_dropped
        )
        return Response(text, content_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get(api.PREFIX + "/openapi.json")
    async def openapi_document() -> Response:
        return json_response(openapi.document())

    _add_access_checks(app, tokens)
    if door is not None:  # a control plane: the agents' door, with credentials of its own
        agents.register(app, door)
    if uploads is not None:
        gateway_uploads.register(app, uploads)
    feeds.register(app, handle, tokens.authenticate)

    @app.errorhandler(DployrError)
    async def domain_error(error: DployrError) -> Response:
        status, code = status_for(error)
        if status >= 500:
            log.error("request failed: %s", error, exc_info=error)
        return error_response(status, code, error_of(error).message)

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
        status, code = status_for(error)
        return error_response(status, code, error_of(error).message)

    return app


def _add_access_checks(app: QuartTrio, tokens: Tokens) -> None:
    """Who the caller is and whether its scope allows the request; the audit log."""

    @app.before_request
    async def authenticate() -> Response | None:
        """Find the caller (a bearer token, or the dashboard's session) and check its scope.

        ``?token=`` is not accepted here: only the WebSocket feeds take it (a browser cannot
        set their headers), so a token never sits in a page's URL, history or a redirect.
        """
        if request.path != "/metrics" and not request.path.startswith("/api/"):
            return None
        if request.path in agents.OPEN_PATHS:  # a join token or an agent credential instead
            return None
        caller = g.get("caller") if g.get("authenticated") else None
        if caller is None:
            token = bearer_token(request.headers)
            if token is None:
                message = "missing API token: send Authorization: Bearer <token>"
                if "token" in request.args:
                    message = (
                        "?token= is accepted only by the WebSocket feeds: "
                        "send Authorization: Bearer <token>"
                    )
                return error_response(401, "unauthorized", message)
            caller = tokens.authenticate(token)
            if caller is None:
                return error_response(401, "unauthorized", "invalid API token")
            g.caller = caller
        rule = request.url_rule.rule if request.url_rule else None
        service = access.service_of(rule, request.view_args)
        refused = access.refusal(caller, request.method, rule, service)
        if refused is not None:
            # Read the body the refusal leaves unread: on a kept-alive connection, Hypercorn
            # would otherwise never answer the next request (issue 12, point 1).
            await request.get_data()
            return error_response(403, "forbidden", refused)
        return None

    @app.before_websocket
    async def authenticate_feed() -> Response | None:
        """The scope check of the feeds; the feeds answer a missing or bad token with 401."""
        caller = g.get("caller") if g.get("authenticated") else None
        if caller is None:
            token = bearer_token(websocket.headers, websocket.args)
            caller = tokens.authenticate(token) if token is not None else None
            if caller is None:
                return None
        rule = websocket.url_rule.rule if websocket.url_rule else None
        refused = access.refusal(caller, "GET", rule, access.service_of(rule, websocket.view_args))
        if refused is not None:
            return error_response(403, "forbidden", refused)
        g.caller = caller
        g.authenticated = True
        return None

    @app.after_request
    async def audit(response: Response) -> Response:
        """Record every change asked of the API by a known caller, with its outcome."""
        caller = g.get("caller")
        if caller is None or not request.path.startswith("/api/"):
            return response
        if request.method in access.SAFE_METHODS:
            if caller.service is not None:
                await _only_its_service(response, caller.service)
            return response
        rule = request.url_rule.rule if request.url_rule else None
        service = access.service_of(rule, request.view_args)
        try:
            tokens.record_audit(
                caller.name, request.method, request.path, service, response.status_code
            )
        except DployrError as error:  # a full disk, say: the change itself stands
            log.warning("could not write the audit log: %s", error)
        return response


async def _only_its_service(response: Response, service: str) -> None:
    """Narrow what lists every service (the services, their latest samples) to the one
    service a service-limited token may see."""
    if response.status_code != 200:
        return
    if request.path == api.PREFIX + "/services":
        listed = json.loads(await response.get_data())
        response.set_data(json.dumps([s for s in listed if s.get("name") == service]))
    elif request.path == api.PREFIX + "/metrics/latest":
        latest = json.loads(await response.get_data())
        samples = [s for s in latest.get("samples", ()) if s.get("service") == service]
        response.set_data(json.dumps({**latest, "samples": samples}))
