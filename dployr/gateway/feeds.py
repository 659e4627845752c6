"""WebSocket feeds: one JSON object per message, each with a ``type``.

``/api/v1/services/{name}/logs/stream?cursor=C&tail=N`` sends the service's log lines,
``{"type": "log", "cursor", "ts", "stream", "line", "deployment"}``: history after cursor
C (or the last N lines), then live lines, with no gap and no duplicate at the seam. A
client that falls behind gets ``{"type": "gap", "from", "to"}`` for the cursors it missed
(it can read them over REST) and the feed goes on; a slow client never slows the service or
grows the daemon's memory, because the feed reads from a bounded subscription.
"""

from __future__ import annotations

import contextlib
import json

from quart import Response, g, websocket
from quart_trio import QuartTrio

from dployr.engine.instance import InstanceHandle
from dployr.errors import DployrError
from dployr.gateway.responses import TokenCheck, bearer_token, error_response, status_for
from dployr.logs.values import LogLine
from dployr.models import check_name
from dployr.supervision.topic import Gap


def _int(name: str) -> int | None:
    raw = websocket.args.get(name)
    if raw in (None, ""):
        return None
    value = int(raw)  # ValueError is turned into a 400 by the caller
    if value < 0:
        raise ValueError(name)
    return value


def log_message(line: LogLine) -> str:
    """One log line as a feed message."""
    return json.dumps(
        {
            "type": "log",
            "cursor": line.cursor,
            "ts": line.ts,
            "stream": line.stream,
            "line": line.line,
            "deployment": line.deployment,
            "continued": line.continued,
        },
        ensure_ascii=False,
    )


def register(app: QuartTrio, handle: InstanceHandle, check_token: TokenCheck) -> None:
    """Add the feeds to the app."""

    @app.websocket("/api/v1/services/<name>/logs/stream")
    async def log_stream(name: str) -> Response | None:
        token = bearer_token(websocket.headers, websocket.args)
        if not g.get("authenticated") and (token is None or not check_token(token)):
            return error_response(401, "unauthorized", "missing or invalid API token")
        try:
            check_name(name)
            cursor, tail = _int("cursor"), _int("tail")
            handle._instance.service(name)  # 404 before accepting
        except ValueError:
            return error_response(400, "bad_request", "cursor and tail must be whole numbers")
        except DployrError as error:
            status, code = status_for(error)
            return error_response(status, code, str(error))
        await websocket.accept()
        if tail is None and cursor is None:
            tail = 0
        feed = handle.follow_logs(name, after=cursor, tail=tail)
        async with contextlib.aclosing(feed):
            async for entry in feed:
                if isinstance(entry, Gap):
                    gap = {"type": "gap", "from": entry.first, "to": entry.last}
                    await websocket.send(json.dumps(gap))
                    continue
                for line in entry:
                    await websocket.send(log_message(line))
        return None
