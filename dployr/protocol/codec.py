"""The protocol's codec: every message as JSON and back.

A message is one of :data:`MESSAGES`: a request, a reply value, a change, a supervision
report, a feed message or an :class:`~dployr.protocol.errors.Error`. Encoded, it is a JSON
object whose ``type`` names it (:data:`TAGS`) beside its fields: the one tagged union the
feeds send, a remote instance will take, and the CLI decodes. A reply is also what a REST
route answers, without a ``type``: :func:`decode_reply` reads it by the request it answers.

Decoding refuses what is not a message with an ``invalid`` Error (one line), never with a
traceback. :data:`PROTOCOL_VERSION` is the ``v1`` of the API's paths; a transport between
instances sends it in an :func:`encode_envelope`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final, TypeVar, get_origin

from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from dployr import serde
from dployr.errors import SpecError
from dployr.logs.values import LogBatch, LogLine
from dployr.metrics import ServiceSample
from dployr.protocol import messages as m
from dployr.protocol.errors import ERROR_CODES, Error
from dployr.protocol.events import (
    DeploymentChanged,
    DiskChanged,
    HealthChanged,
    StatusChanged,
    SupervisionReport,
)
from dployr.protocol.feed import Gap, LogLines

T = TypeVar("T")

PROTOCOL_VERSION: Final = 1
"""The version of these messages: the ``v1`` of ``/api/v1``. A change a reader of this
version could not read raises it."""

converter = serde.converter.copy()
"""The shared converter (strict: unknown fields and wrong types are refused), plus the
protocol's own field names."""


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


REPLIES: Final[tuple[type, ...]] = (
    m.ServiceInfo,
    m.SettingsView,
    m.EnvListing,
    m.LogPage,
    m.InstanceInfo,
    m.InstanceView,
    m.JoinTokenView,
    m.MetricsPage,
    m.KeyRotated,
    m.Deleted,
    m.JobInfo,
)
"""The reply values of their own (other replies are domain values: a Deployment, a tuple)."""

TAGS: Final[dict[type, str]] = {
    LogLine: "log",
    LogLines: "logs",
    Gap: "gap",
    StatusChanged: "status",
    HealthChanged: "health",
    DeploymentChanged: "deployment",
    DiskChanged: "disk",
    SupervisionReport: "supervision",
    ServiceSample: "metrics",
    Error: "error",
    **{cls: _snake(cls.__name__) for cls in (*m.REQUESTS, m.SettingsChange, *REPLIES)},
}
"""Each message type and its ``type`` on the wire (the feeds' names are docs/feeds.md's)."""

MESSAGES: Final[tuple[type, ...]] = tuple(TAGS)
_BY_TAG: Final[dict[str, type]] = {tag: cls for cls, tag in TAGS.items()}
assert len(_BY_TAG) == len(TAGS), "two message types share a tag"


def _is_set(tp: Any) -> bool:
    return tp in (set, frozenset) or get_origin(tp) in (set, frozenset)


# A set is a JSON array (sorted, so that one value always encodes the same).
converter.register_unstructure_hook_func(_is_set, sorted)


# The wire names that differ from the attribute names: a change's time is ``ts`` as
# everywhere else in the feeds, a gap's range ``from`` and ``to``.
for _cls in (StatusChanged, HealthChanged, DeploymentChanged, DiskChanged):
    converter.register_unstructure_hook(
        _cls, make_dict_unstructure_fn(_cls, converter, at=override(rename="ts"))
    )
    converter.register_structure_hook(
        _cls,
        make_dict_structure_fn(
            _cls, converter, _cattrs_forbid_extra_keys=True, at=override(rename="ts")
        ),
    )
converter.register_unstructure_hook(
    Gap,
    make_dict_unstructure_fn(
        Gap, converter, first=override(rename="from"), last=override(rename="to")
    ),
)
converter.register_structure_hook(
    Gap,
    make_dict_structure_fn(
        Gap,
        converter,
        _cattrs_forbid_extra_keys=True,
        first=override(rename="from"),
        last=override(rename="to"),
    ),
)

# A control plane's ``is_self`` is ``self`` on the wire (a name Python's methods take).
converter.register_unstructure_hook(
    m.ControlPlaneView,
    make_dict_unstructure_fn(m.ControlPlaneView, converter, is_self=override(rename="self")),
)
converter.register_structure_hook(
    m.ControlPlaneView,
    make_dict_structure_fn(
        m.ControlPlaneView,
        converter,
        _cattrs_forbid_extra_keys=True,
        is_self=override(rename="self"),
    ),
)


def _unstructure_lines(message: LogLines) -> dict[str, Any]:
    # Each line is a whole ``log`` message, as the feed sends it one by one.
    log_line = converter.get_unstructure_hook(LogLine)
    return {"lines": [{"type": "log", **log_line(line)} for line in message.lines]}


def _structure_lines(data: Any, _: type) -> LogLines:
    lines = data.get("lines") if isinstance(data, dict) and set(data) == {"lines"} else None
    if not isinstance(lines, list):
        raise SpecError('a logs message must be {"lines": [...]}')
    if any(not isinstance(line, dict) or line.get("type") != "log" for line in lines):
        raise SpecError("each of a logs message's lines must be a log message")
    log_line = converter.get_structure_hook(LogLine)
    return LogLines(
        tuple(log_line({k: v for k, v in d.items() if k != "type"}, LogLine) for d in lines)
    )


converter.register_unstructure_hook(LogLines, _unstructure_lines)
converter.register_structure_hook(LogLines, _structure_lines)


def _unstructure_error(error: Error) -> dict[str, Any]:
    return {"code": error.code, "message": error.message}


def _structure_error(data: Any, _: type) -> Error:
    if not isinstance(data, dict) or set(data) != {"code", "message"}:
        raise SpecError('an error must be {"code": ..., "message": ...}')
    code, message = data["code"], data["message"]
    if code not in ERROR_CODES or not isinstance(message, str):
        raise SpecError(f"not an error code: {code!r}")
    return Error(code, message)


converter.register_unstructure_hook(Error, _unstructure_error)
converter.register_structure_hook(Error, _structure_error)


def _structure(data: Any, cls: Any) -> Any:
    """``serde.structure`` on the protocol's converter: an invalid Error, not a traceback."""
    try:
        return serde.structure(data, cls, converter=converter)
    except SpecError as error:
        raise Error("invalid", str(error)) from None


def unstructure(value: Any) -> Any:
    """Plain data (dicts, lists, strings, numbers) for a message or reply, without a tag."""
    return converter.unstructure(value)


def encode(message: Any) -> dict[str, Any]:
    """A message as plain data: ``{"type": ..., **fields}``."""
    tag = TAGS.get(type(message))
    if tag is None:
        raise TypeError(f"not a protocol message: {message!r}")
    return {"type": tag, **converter.unstructure(message)}


def decode(data: Any) -> Any:
    """The message that plain data holds; an ``invalid`` Error if it holds none."""
    if not isinstance(data, dict):
        raise Error("invalid", "a message must be a JSON object")
    tag = data.get("type")
    cls = _BY_TAG.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise Error("invalid", f"not a message type: {str(tag)[:40]!r}")
    return _structure({k: v for k, v in data.items() if k != "type"}, cls)


def dumps(message: Any) -> str:
    """A message as compact JSON text (one WebSocket message)."""
    return json.dumps(encode(message), ensure_ascii=False, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    """The message of JSON text; an ``invalid`` Error if it holds none."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise Error("invalid", f"malformed JSON: {getattr(error, 'msg', error)}") from None
    return decode(data)


def decode_reply(request: type[m.Request[T]], data: Any) -> T:
    """The reply to a ``request`` from plain data (a REST answer's body)."""
    reply: T = _structure(data, m.reply_type(request))
    return reply


def decode_as(data: Any, cls: type[T]) -> T:
    """A value of ``cls`` (a reply value, a model) from plain data, without a tag."""
    value: T = _structure(data, cls)
    return value


def encode_envelope(message: Any) -> dict[str, Any]:
    """A message with the protocol version, as a transport between instances sends it."""
    return {"v": PROTOCOL_VERSION, "message": encode(message)}


def decode_envelope(data: Any) -> Any:
    """The message of an envelope; an ``invalid`` Error for a version newer than this one."""
    if not isinstance(data, dict) or set(data) != {"v", "message"}:
        raise Error("invalid", 'an envelope must be {"v": VERSION, "message": {...}}')
    version = data["v"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise Error("invalid", f"not a protocol version: {str(version)[:40]!r}")
    if version > PROTOCOL_VERSION:
        raise Error(
            "invalid",
            f"protocol version {version} is newer than this dployr's {PROTOCOL_VERSION}",
        )
    return decode(data["message"])


# -- the log feed's fast path ------------------------------------------------------------

_text = json.encoder.encode_basestring


def encode_log_batch(batch: LogBatch, limit: int) -> list[str]:
    """The lines of ``batch`` as ``log`` messages, comma-separated (a JSON array's inside),
    in parts of at most ``limit`` characters (but at least one line each).

    The same JSON as :func:`dumps` of each of ``batch.to_lines()``, written without making a
    LogLine per line: the log feed sends every line a service writes.
    """
    ts = json.dumps(batch.ts)
    middle = f',"ts":{ts},"stream":"{batch.stream}","line":'
    deployment = "null" if batch.deployment is None else str(batch.deployment)
    end = f',"deployment":{deployment},"continued":'
    first, continued = batch.first_cursor, batch.continued
    return join_within(
        [
            f'{{"type":"log","cursor":{first + index}{middle}{_text(line)}{end}'
            f"{'true' if index in continued else 'false'}}}"
            for index, line in enumerate(batch.lines)
        ],
        limit,
    )


def encode_log_lines(lines: list[LogLine], limit: int) -> list[str]:
    """Log lines as ``log`` messages, comma-separated, in parts as :func:`encode_log_batch`:
    the JSON of :func:`dumps` of each, written without the converter (a remote follow
    relays every line a service writes)."""
    return join_within([_log_line_json(line) for line in lines], limit)


def _log_line_json(line: LogLine) -> str:
    deployment = "null" if line.deployment is None else str(line.deployment)
    return (
        f'{{"type":"log","cursor":{line.cursor},"ts":{json.dumps(line.ts)},'
        f'"stream":{_text(line.stream)},"line":{_text(line.line)},'
        f'"deployment":{deployment},"continued":{"true" if line.continued else "false"}}}'
    )


_LOG_FIELDS: Final = frozenset(
    {"type", "cursor", "ts", "stream", "line", "deployment", "continued"}
)


def decode_item(data: Any) -> Any:
    """:func:`decode`, with a fast path for a ``log`` message of the usual shape (a remote
    follow relays every line a service writes): the same LogLine, without the converter.
    Anything else, and anything the fast path doubts, takes :func:`decode`."""
    if type(data) is dict and data.get("type") == "log" and data.keys() == _LOG_FIELDS:
        cursor, ts, stream, line = data["cursor"], data["ts"], data["stream"], data["line"]
        deployment, continued = data["deployment"], data["continued"]
        if (
            type(cursor) is int
            and type(ts) is float
            and type(stream) is str
            and type(line) is str
            and (deployment is None or type(deployment) is int)
            and type(continued) is bool
        ):
            try:
                return LogLine(cursor, ts, stream, line, deployment, continued)
            except SpecError:
                pass  # decode() says why, as for any message
    return decode(data)


def join_within(items: list[str], limit: int) -> list[str]:
    """``items`` joined by commas into parts of at most ``limit`` characters (an item longer
    than that is a part of its own)."""
    parts: list[str] = []
    start = size = 0
    for index, item in enumerate(items):
        if index > start and size + 1 + len(item) > limit:
            parts.append(",".join(items[start:index]))
            start, size = index, 0
        size += len(item) + (1 if index > start else 0)
    if start < len(items):
        parts.append(",".join(items[start:]))
    return parts
