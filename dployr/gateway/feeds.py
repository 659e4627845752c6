"""WebSocket feeds: one JSON object per message, each with a ``type``.

``/api/v1/services/{name}/logs/stream?cursor=C&tail=N`` sends the service's log lines,
``{"type": "log", "cursor", "ts", "stream", "line", "deployment"}``: history after cursor
C (or the last N lines), then live lines, with no gap and no duplicate at the seam. A
client that falls behind gets ``{"type": "gap", "from", "to"}`` for the cursors it missed
(it can read them over REST) and the feed goes on; a slow client never slows the service or
grows the daemon's memory, because the feed reads from a bounded subscription.
"""

from __future__ import annotations

import collections
import contextlib
import json
from collections.abc import Callable
from typing import TypeVar

import trio
from quart import Response, g, websocket
from quart_trio import QuartTrio

from dployr.engine.instance import (
    Change,
    DiskChanged,
    HealthChanged,
    InstanceHandle,
    StatusChanged,
)
from dployr.errors import DployrError
from dployr.gateway.responses import TokenCheck, bearer_token, error_response, status_for
from dployr.logs.values import LogBatch, LogLine, lines_of
from dployr.metrics import Sample, ServiceSample
from dployr.models import check_name
from dployr.supervision import SupervisionEvent
from dployr.supervision.topic import Gap, Subscription

T = TypeVar("T")
MAX_TAIL = 10_000


def _int(name: str) -> int | None:
    raw = websocket.args.get(name)
    if raw in (None, ""):
        return None
    if len(raw) > 20:
        raise ValueError(name)
    value = int(raw)  # ValueError is turned into a 400 by the caller
    if not 0 <= value < 2**53:
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


_encode_text = json.encoder.encode_basestring
BATCH_WINDOW = 0.01
"""Seconds a batching log feed waits after a message, letting the next one gather lines."""
ENCODED_BYTES = 8 * 2**20
"""How much the encodings kept for the next follower may hold (with their batches)."""


def _encode_batch(batch: LogBatch) -> str:
    """The lines of ``batch`` as log messages, comma-separated (a JSON array's inside)."""
    ts = json.dumps(batch.ts)
    rest = f',"ts":{ts},"stream":"{batch.stream}","line":'
    deployment = "null" if batch.deployment is None else str(batch.deployment)
    end = f',"deployment":{deployment},"continued":'
    first, continued = batch.first_cursor, batch.continued
    return ",".join(
        f'{{"type":"log","cursor":{first + index}{rest}{_encode_text(line)}{end}'
        f"{'true' if index in continued else 'false'}}}"
        for index, line in enumerate(batch.lines)
    )


class BatchEncoder:
    """Encodes live batches once for every follower: they are handed the same objects."""

    def __init__(self, size: int = ENCODED_BYTES) -> None:
        self.size = size
        """The bound of :attr:`held`: the newest encodings are kept, the oldest dropped."""
        self.held = 0
        """Bytes held: each kept batch's payload and encoding."""
        self._cache: collections.OrderedDict[int, tuple[LogBatch, str]] = collections.OrderedDict()

    def encode(self, batch: LogBatch) -> str:
        # Keyed by id: the cache holds each batch it has, so no other object has its id.
        key = id(batch)
        cached = self._cache.get(key)
        if cached is not None:
            return cached[1]
        text = _encode_batch(batch)
        self._cache[key] = (batch, text)
        self.held += batch.nbytes + len(text)
        while self.held > self.size and len(self._cache) > 1:
            self._forget(next(iter(self._cache)))
        return text

    def _forget(self, key: int) -> None:
        batch, text = self._cache.pop(key)
        self.held -= batch.nbytes + len(text)

    def message(self, entry: list[LogLine] | tuple[LogBatch, ...]) -> str:
        """One ``logs`` message holding every line of ``entry``."""
        if isinstance(entry, tuple):
            inside = ",".join(self.encode(batch) for batch in entry)
        else:
            inside = ",".join(log_message(line) for line in entry)
        return f'{{"type":"logs","lines":[{inside}]}}'


def register(app: QuartTrio, handle: InstanceHandle, check_token: TokenCheck) -> None:
    """Add the feeds to the app."""
    register_instance_feeds(app, handle, check_token)
    encoder = BatchEncoder()

    @app.websocket("/api/v1/services/<name>/logs/stream")
    async def log_stream(name: str) -> Response | None:
        token = bearer_token(websocket.headers, websocket.args)
        if not g.get("authenticated") and (token is None or not check_token(token)):
            return error_response(401, "unauthorized", "missing or invalid API token")
        try:
            check_name(name)
        except DployrError as error:
            return error_response(422, "invalid", str(error))
        try:
            cursor, tail = _int("cursor"), _int("tail")
        except ValueError:
            return error_response(400, "bad_request", "cursor and tail must be whole numbers")
        batch = websocket.args.get("batch", "0")
        if batch not in ("0", "1", "true", "false"):
            return error_response(400, "bad_request", "batch must be 1 or 0 (true or false)")
        try:
            handle.check_service(name)  # 404 before accepting
        except DployrError as error:
            status, code = status_for(error)
            return error_response(status, code, str(error))
        await websocket.accept()
        if tail is None and cursor is None:
            tail = 0
        if tail is not None:
            tail = min(tail, MAX_TAIL)  # as over REST: one client never loads a whole history
        feed = handle.follow_log_batches(name, after=cursor, tail=tail)
        batched = batch in ("1", "true")
        async with contextlib.aclosing(feed):
            async for entry in feed:
                if isinstance(entry, Gap):
                    gap = {"type": "gap", "from": entry.first, "to": entry.last}
                    await websocket.send(json.dumps(gap))
                elif batched:
                    await websocket.send(encoder.message(entry))
                    if isinstance(entry, tuple):  # live: let the next lines gather
                        await trio.sleep(BATCH_WINDOW)
                else:
                    lines = entry if isinstance(entry, list) else lines_of(entry)
                    for line in lines:
                        await websocket.send(log_message(line))
        return None


def change_message(change: Change) -> dict[str, object]:
    """One status, health, deployment or disk change as a feed message."""
    if isinstance(change, DiskChanged):  # the data dir's disk is full, or has room again
        return {"type": "disk", "instance": change.instance, "full": change.full, "ts": change.at}
    if isinstance(change, StatusChanged):
        return {
            "type": "status",
            "service": change.service,
            "instance": change.instance,
            "status": change.status.value,
            "previous": change.previous.value,
            "ts": change.at,
        }
    if isinstance(change, HealthChanged):
        return {
            "type": "health",
            "service": change.service,
            "instance": change.instance,
            "health": change.health.value,
            "previous": change.previous.value,
            "message": change.message,
            "ts": change.at,
        }
    return {
        "type": "deployment",
        "service": change.service,
        "instance": change.instance,
        "deployment": change.deployment,
        "status": change.status.value,
        "ts": change.at,
    }


def supervision_message(event: SupervisionEvent) -> dict[str, object]:
    """One supervision report (OTP-style) as a feed message."""
    return {
        "type": "supervision",
        "kind": event.kind,
        "supervisor": "/".join(event.supervisor),
        "child": event.child.id,
        "incarnation": event.child.incarnation,
        "message": event.describe(),
    }


def metrics_message(sample: ServiceSample) -> dict[str, object]:
    """One service sample as a feed message."""
    return {
        "type": "metrics",
        "service": sample.service,
        "ts": sample.ts,
        "cpu_percent": sample.cpu_percent,
        "memory_rss_bytes": sample.memory_rss_bytes,
        "processes": sample.processes,
        "threads": sample.threads,
        "open_fds": sample.open_fds,
    }


async def _send_batches(
    subscription: Subscription[T], render: Callable[[T], dict[str, object] | None]
) -> None:
    """Send every item of a subscription as a message; a gap says how many were missed."""
    with subscription:
        async for entry in subscription:
            if isinstance(entry, Gap):
                await websocket.send(json.dumps({"type": "gap", "missed": entry.missed}))
                continue
            for item in entry:
                message = render(item)
                if message is not None:
                    await websocket.send(json.dumps(message))


def register_instance_feeds(
    app: QuartTrio, handle: InstanceHandle, check_token: TokenCheck
) -> None:
    """Add the events feed and the metrics feed to the app."""

    def refused() -> Response | None:
        token = bearer_token(websocket.headers, websocket.args)
        if not g.get("authenticated") and (token is None or not check_token(token)):
            return error_response(401, "unauthorized", "missing or invalid API token")
        return None

    @app.websocket("/api/v1/events")
    async def events() -> Response | None:
        refusal = refused()
        if refusal is not None:
            return refusal
        await websocket.accept()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_send_batches, handle.subscribe_changes(), change_message)
            nursery.start_soon(_send_batches, handle.subscribe_supervision(), supervision_message)
        return None

    @app.websocket("/api/v1/services/<name>/metrics/stream")
    async def metrics_stream(name: str) -> Response | None:
        refusal = refused()
        if refusal is not None:
            return refusal
        try:
            handle.check_service(name)
        except DployrError as error:
            status, code = status_for(error)
            return error_response(status, code, str(error))
        await websocket.accept()

        def render(sample: Sample) -> dict[str, object] | None:
            if isinstance(sample, ServiceSample) and sample.service == name:
                return metrics_message(sample)
            return None

        await _send_batches(handle.subscribe_samples(), render)
        return None
