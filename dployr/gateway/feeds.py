"""WebSocket feeds: one JSON object per message, each with a ``type``.

Every message is a protocol value encoded by :mod:`dployr.protocol.codec` (docs/feeds.md
shows each). ``/api/v1/services/{name}/logs/stream?cursor=C&tail=N`` sends the service's
log lines: history after cursor C (or the last N lines), then live lines, with no gap and
no duplicate at the seam, as ``logs`` messages holding every line that arrived together
(``batch=0``: one ``log`` message per line). A client that falls behind gets a ``gap``
message for the cursors it missed (it can read them over REST) and the feed goes on; a
slow client never slows the service or grows the daemon's memory, because the feed reads
from a bounded subscription. ``/api/v1/events`` sends every change and supervision report
of the instance, ``/api/v1/services/{name}/metrics/stream`` the service's samples.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable
from typing import Any

import trio
from quart import Response, g, websocket
from quart_trio import QuartTrio

from dployr.gateway.responses import TokenCheck, bearer_token, error_response, status_for
from dployr.logs.values import LogBatch, LogLine, lines_of
from dployr.protocol import codec
from dployr.protocol.errors import Error
from dployr.protocol.feed import Gap
from dployr.protocol.handle import Feed, InstanceHandle

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


BATCH_WINDOW = 0.01
"""Seconds a batching log feed waits after a message, letting the next one gather lines."""
ENCODED_BYTES = 8 * 2**20
"""How much the encodings kept for the next follower may hold (with their batches)."""


MESSAGE_CHARS = 2**16
"""The most characters a ``logs`` message holds (but at least one line): well within the
1 MiB WebSocket clients take by default however the lines encode, and small enough that
a client that stops reading holds only a little in flight (hundreds of short lines still
share a message)."""


class BatchEncoder:
    """Encodes live batches once for every follower: they are handed the same objects."""

    def __init__(self, size: int = ENCODED_BYTES, limit: int = MESSAGE_CHARS) -> None:
        self.size = size
        """The bound of :attr:`held`: the newest encodings are kept, the oldest dropped."""
        self.limit = limit
        """The most characters of a message (see :data:`MESSAGE_CHARS`)."""
        self.held = 0
        """Bytes held: each kept batch's payload and encoding."""
        self._cache: collections.OrderedDict[int, tuple[LogBatch, list[str]]] = (
            collections.OrderedDict()
        )

    def encode(self, batch: LogBatch) -> list[str]:
        """The batch's lines as log messages, comma-separated, in parts within the limit."""
        # Keyed by id: the cache holds each batch it has, so no other object has its id.
        key = id(batch)
        cached = self._cache.get(key)
        if cached is not None:
            return cached[1]
        parts = codec.encode_log_batch(batch, self.limit)
        self._cache[key] = (batch, parts)
        self.held += batch.nbytes + sum(map(len, parts))
        while self.held > self.size and len(self._cache) > 1:
            self._forget(next(iter(self._cache)))
        return parts

    def _forget(self, key: int) -> None:
        batch, parts = self._cache.pop(key)
        self.held -= batch.nbytes + sum(map(len, parts))

    def messages(self, entry: list[LogLine] | tuple[LogBatch, ...]) -> list[str]:
        """``logs`` messages holding every line of ``entry``, in order: the JSON of
        ``codec.dumps(LogLines(...))`` of its lines, as few messages as the limit allows,
        the live batches' parts encoded once for every follower."""
        if isinstance(entry, tuple):
            parts = [part for batch in entry for part in self.encode(batch)]
        else:
            parts = codec.encode_log_lines(entry, self.limit)
        return [
            f'{{"type":"logs","lines":[{inside}]}}'
            for inside in codec.join_within(parts, self.limit)
        ]


def _refusal(error: Exception) -> Response:
    status, code = status_for(error)
    return error_response(status, code, str(error))


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
            cursor, tail = _int("cursor"), _int("tail")
        except ValueError:
            return error_response(400, "bad_request", "cursor and tail must be whole numbers")
        batch = websocket.args.get("batch", "1")
        if batch not in ("0", "1", "true", "false"):
            return error_response(400, "bad_request", "batch must be 1 or 0 (true or false)")
        try:
            handle.check_service(name)  # 422 or 404 before accepting
        except Error as error:
            return _refusal(error)
        await websocket.accept()
        if tail is None and cursor is None:
            tail = 0
        if tail is not None:
            tail = min(tail, MAX_TAIL)  # as over REST: one client never loads a whole history
        feed = handle.follow_logs(name, after=cursor, tail=tail)
        batched = batch in ("1", "true")
        async with contextlib.aclosing(feed):
            async for entry in feed:
                if isinstance(entry, Gap):
                    await websocket.send(codec.dumps(entry))
                elif batched:
                    for message in encoder.messages(entry):
                        await websocket.send(message)
                    if isinstance(entry, tuple):  # live: let the next lines gather
                        await trio.sleep(BATCH_WINDOW)
                else:
                    lines = entry if isinstance(entry, list) else lines_of(entry)
                    for line in lines:
                        await websocket.send(codec.dumps(line))
        return None


async def _send(feed: Feed[Any], keep: Callable[[Any], bool] | None = None) -> None:
    """Send every item of a feed (that ``keep`` keeps) as a message, and every gap."""
    with feed:
        async for entry in feed:
            if isinstance(entry, Gap):
                await websocket.send(codec.dumps(entry))
                continue
            for item in entry:
                if keep is None or keep(item):
                    await websocket.send(codec.dumps(item))


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
            nursery.start_soon(_send, handle.subscribe_changes())
            nursery.start_soon(_send, handle.subscribe_supervision())
        return None

    @app.websocket("/api/v1/services/<name>/metrics/stream")
    async def metrics_stream(name: str) -> Response | None:
        refusal = refused()
        if refusal is not None:
            return refusal
        try:
            handle.check_service(name)
        except Error as error:
            return _refusal(error)
        await websocket.accept()
        await _send(handle.subscribe_metrics(), lambda sample: sample.service == name)
        return None
