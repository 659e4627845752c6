"""The agent protocol: the frames an agent and the control plane exchange on one WebSocket.

Every frame is one text message, a JSON object whose ``type`` names it (:data:`FRAME_TAGS`),
encoded with the protocol's codec: the requests, replies, changes and log lines inside
frames are the very values the REST API and the feeds carry. docs/agent-protocol.md
describes the exchange; in short:

* the agent opens with :class:`Hello` (its instance, dployr version, protocol version,
  capabilities and boot epoch); the control plane answers :class:`HelloAck` or closes the
  channel with a reason (a newer major protocol version is refused, never guessed at);
* :class:`Call` (an id and a request) is answered by :class:`Result` (the same id, a reply
  or an Error) and settled by :class:`Ack`: the agent keeps each Result until it is acked
  and answers a Call id it has seen with the kept Result, so a Call runs once;
* :class:`Update` snapshots (the services, the machine) carry a sequence number and the
  agent's boot epoch; the first after a hello is ``full``;
* :class:`Subscribe` opens a feed on demand (changes, logs from a cursor, metrics,
  supervision); the agent answers :class:`Items` and :class:`SubscriptionGap`, and
  :class:`Ended` when it ends it; :class:`Unsubscribe` closes it;
* :class:`Ping` / :class:`Pong` keep the channel's heartbeat;
* :class:`ControlPlanes` tells the agent every control plane sharing the cluster (as the
  hello_ack did) when they change: the agent keeps a channel to each.
* :class:`UploadChunk` carries a folder uploaded to the control plane to the agent that
  builds it, a part at a time; :class:`UploadAck` says how much of it the agent holds.

Pure: no trio, no sockets. :func:`decode_frame` refuses what is not a valid frame of at
most :data:`MAX_FRAME` bytes with an ``invalid`` :class:`~dployr.protocol.errors.Error`.
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal, Protocol, get_args
from urllib.parse import urlsplit

import attrs

from dployr import serde
from dployr.errors import SpecError
from dployr.metrics import ServiceSample
from dployr.protocol import codec
from dployr.protocol import messages as m
from dployr.protocol.errors import Error
from dployr.protocol.messages import ServiceInfo

WIRE_VERSION: Final = 1
"""The major version of these frames. A reader refuses a hello of a newer one: a change an
older reader could not read raises it; a new optional field or frame does not."""

MAX_FRAME: Final = 2**20
"""The most bytes of one frame (1 MiB, UTF-8): a longer one is refused and closes the
channel. Log lines are split over several :class:`Items` frames to stay within it."""

ITEMS_CHARS: Final = 2**16
"""The most characters of the items of one :class:`Items` frame the agent sends (at least
one item): small frames keep a follower's latency low and the channel shared fairly."""

UPLOAD_CHUNK: Final = 2**18
"""The most bytes of an upload one :class:`UploadChunk` carries (base64: a third more)."""

HEARTBEAT: Final = 5.0
"""Seconds between the control plane's pings."""

AWAY_AFTER: Final = 15.0
"""Seconds without a frame after which a channel is taken for dead and closed."""

SubscriptionKind = Literal["changes", "logs", "metrics", "supervision"]
SUBSCRIPTION_KINDS: Final[tuple[str, ...]] = get_args(SubscriptionKind)


def _id(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not 0 < len(value) <= 64:
        raise SpecError(f"{attribute.name} must be 1 to 64 characters")


def _count(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value < 2**53:
        raise SpecError(f"{attribute.name} must be a whole number from 0")


@attrs.frozen
class Hello:
    """The agent's first frame: who it is and what it speaks."""

    instance: str
    version: str
    """The agent's dployr version."""
    protocol: int
    """The wire's major version the agent speaks (:data:`WIRE_VERSION`)."""
    capabilities: tuple[str, ...]
    epoch: str = attrs.field(validator=_id)
    """Changes each time the agent starts: a new epoch means the agent's sequence
    numbers and subscriptions started again."""


def _url(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    try:
        parts = urlsplit(value) if len(value) <= 2000 else None
    except ValueError:  # a bracketed host that is not an IPv6 address
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise SpecError(f"{attribute.name} must be an http:// or https:// URL")


@attrs.frozen
class ControlPlane:
    """One of the control planes sharing the cluster: its id (new at each of its starts)
    and the URL agents reach it at."""

    id: str = attrs.field(validator=_id)
    url: str = attrs.field(validator=_url)


@attrs.frozen
class HelloAck:
    """The control plane accepts the agent."""

    instance: str
    protocol: int
    heartbeat: float
    """Seconds between pings: the agent takes the channel for dead after three missed."""
    control_plane: str | None = None
    """This control plane's id (:class:`ControlPlane`)."""
    control_planes: tuple[ControlPlane, ...] = ()
    """Every control plane of the cluster, this one included: the agent keeps a channel
    to each."""


@attrs.frozen
class ControlPlanes:
    """The control planes of the cluster changed (one started, or was forgotten): every
    one, as in :attr:`HelloAck.control_planes`."""

    control_planes: tuple[ControlPlane, ...]


@attrs.frozen
class Call:
    """Carry out ``request``; the :class:`Result` repeats ``id``."""

    id: str = attrs.field(validator=_id)
    request: m.Request[Any]


@attrs.frozen
class Result:
    """The answer to the Call ``id``: the reply as plain data (read by the request it
    answers, :func:`~dployr.protocol.codec.decode_reply`) or an error."""

    id: str = attrs.field(validator=_id)
    reply: Any = None
    error: Error | None = None


@attrs.frozen
class Ack:
    """The control plane has the Result of Call ``id``: the agent may forget it."""

    id: str = attrs.field(validator=_id)


@attrs.frozen
class Update:
    """A snapshot of the agent: its services and its machine."""

    seq: int = attrs.field(validator=_count)
    """One more per Update of this epoch: a jump says one was missed."""
    epoch: str = attrs.field(validator=_id)
    full: bool
    """True for the first Update after a hello: everything, not what changed."""
    generation: int = attrs.field(validator=_count)
    """The agent's :attr:`~dployr.protocol.handle.InstanceHandle.generation`."""
    services: tuple[ServiceInfo, ...]
    """Every service when ``full``, else those that changed since the last Update."""
    removed: tuple[str, ...] = ()
    """The services gone since the last Update."""
    machine: dict[str, Any] | None = None
    """The last sample of the machine (an InstanceSample's fields), if any."""
    samples: tuple[ServiceSample, ...] = ()
    """The last sample of every running service."""


@attrs.frozen
class Subscribe:
    """Open subscription ``sub`` of ``kind``: ``service`` for logs (then ``after`` a
    cursor, or the last ``tail`` lines), else every service."""

    sub: int = attrs.field(validator=_count)
    kind: SubscriptionKind
    service: str | None = None
    after: int | None = None
    tail: int | None = None
    streams: tuple[str, ...] | None = None
    """Only these log streams (``stdout``, ``stderr``, ``build``, ``system``)."""


@attrs.frozen
class Items:
    """Items of subscription ``sub``: log lines, changes, supervision reports or samples,
    each a tagged protocol message."""

    sub: int = attrs.field(validator=_count)
    items: tuple[Any, ...]


@attrs.frozen
class SubscriptionGap:
    """Subscription ``sub`` missed ``missed`` items (log cursors ``first`` to ``last``)."""

    sub: int = attrs.field(validator=_count)
    missed: int
    first: int
    last: int


@attrs.frozen
class Ended:
    """The agent ended subscription ``sub`` (the service is gone, or it refused it)."""

    sub: int = attrs.field(validator=_count)
    error: Error | None = None


@attrs.frozen
class Unsubscribe:
    """The control plane no longer wants subscription ``sub``."""

    sub: int = attrs.field(validator=_count)


@attrs.frozen
class Ping:
    """Are you there? Answered by a :class:`Pong` with the same ``seq``."""

    seq: int = attrs.field(validator=_count)


@attrs.frozen
class Pong:
    """Here."""

    seq: int = attrs.field(validator=_count)


@attrs.frozen
class UploadChunk:
    """Bytes ``offset``... of upload ``upload`` (``size`` bytes in all, whose SHA-256 is
    ``sha256``), base64-encoded in ``data``: the agent keeps them until the upload is whole
    and answers :class:`UploadAck`."""

    upload: str = attrs.field(validator=_id)
    offset: int = attrs.field(validator=_count)
    size: int = attrs.field(validator=_count)
    sha256: str = attrs.field(validator=_id)
    data: str


@attrs.frozen
class UploadAck:
    """The agent holds the first ``received`` bytes of upload ``upload`` (all of them, and
    checked, when it equals the size), or it cannot take it (``error``)."""

    upload: str = attrs.field(validator=_id)
    received: int = attrs.field(validator=_count)
    error: Error | None = None


Frame = (
    Hello
    | HelloAck
    | Call
    | Result
    | Ack
    | Update
    | Subscribe
    | Items
    | SubscriptionGap
    | Ended
    | Unsubscribe
    | Ping
    | Pong
    | ControlPlanes
    | UploadChunk
    | UploadAck
)

FRAME_TAGS: Final[dict[type, str]] = {
    Hello: "hello",
    HelloAck: "hello_ack",
    Call: "call",
    Result: "result",
    Ack: "ack",
    Update: "update",
    Subscribe: "subscribe",
    Items: "items",
    SubscriptionGap: "gap",
    Ended: "ended",
    Unsubscribe: "unsubscribe",
    Ping: "ping",
    Pong: "pong",
    ControlPlanes: "control_planes",
    UploadChunk: "upload",
    UploadAck: "upload_ack",
}
_BY_TAG: Final[dict[str, type]] = {tag: cls for cls, tag in FRAME_TAGS.items()}

converter = codec.converter.copy()
"""The codec's converter, plus the frames' own fields: a Call's request and an Items'
items are tagged protocol messages."""


def _unstructure_call(call: Call) -> dict[str, Any]:
    return {"id": call.id, "request": codec.encode(call.request)}


def _structure_call(data: Any, _: type) -> Call:
    if not isinstance(data, dict) or set(data) != {"id", "request"}:
        raise SpecError('a call must be {"id": ..., "request": {...}}')
    request = codec.decode(data["request"])
    if not isinstance(request, m.Request):
        raise SpecError(f"not a request: {data['request'].get('type')!r}")
    return Call(serde.structure(data["id"], str, converter=converter), request)


def _unstructure_items(items: Items) -> dict[str, Any]:
    return {"sub": items.sub, "items": [codec.encode(item) for item in items.items]}


def _structure_items(data: Any, _: type) -> Items:
    if not isinstance(data, dict) or set(data) != {"sub", "items"}:
        raise SpecError('items must be {"sub": ..., "items": [...]}')
    if not isinstance(data["items"], list):
        raise SpecError("items must be a list of messages")
    return Items(
        serde.structure(data["sub"], int, converter=converter),
        tuple(codec.decode_item(item) for item in data["items"]),
    )


def _plain(value: Any, _: type) -> Any:
    return value  # a Result's reply: read later by the request it answers


def _plain_dict(value: Any, _: type) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError("must be an object")
    return value


converter.register_unstructure_hook(Call, _unstructure_call)
converter.register_structure_hook(Call, _structure_call)
converter.register_unstructure_hook(Items, _unstructure_items)
converter.register_structure_hook(Items, _structure_items)
converter.register_structure_hook_func(lambda tp: tp is Any, _plain)
converter.register_structure_hook_func(lambda tp: tp == dict[str, Any], _plain_dict)


class FrameTooLarge(Error):
    """A frame would exceed :data:`MAX_FRAME`."""

    def __init__(self, size: int) -> None:
        super().__init__(
            "invalid", f"a frame of {size} bytes is larger than the wire's {MAX_FRAME} bytes"
        )


def encode_frame(frame: Frame) -> str:
    """A frame as one compact JSON text; FrameTooLarge if it would exceed the limit."""
    text = json.dumps(
        {"type": FRAME_TAGS[type(frame)], **converter.unstructure(frame)},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    if len(text) > MAX_FRAME // 4 and len(text.encode()) > MAX_FRAME:
        raise FrameTooLarge(len(text.encode()))
    return text


def encode_updates(update: Update) -> list[str]:
    """``update`` as frames within the limit: one, unless its services need more room; then
    the first (``full`` if the update is) holds what fits and the next ones (not full, the
    following sequence numbers) the rest. Samples that do not fit are left out (the next
    metrics round sends them again)."""
    try:
        return [encode_frame(update)]
    except FrameTooLarge:
        services = update.services
        if len(services) <= 1:
            if not update.samples:
                raise
            return encode_updates(attrs.evolve(update, samples=()))
    half = len(services) // 2
    first = encode_updates(attrs.evolve(update, services=services[:half]))
    rest = attrs.evolve(
        update,
        seq=update.seq + len(first),
        full=False,
        services=services[half:],
        removed=(),
        samples=(),
    )
    return first + encode_updates(rest)


def decode_frame(text: str | bytes) -> Frame:
    """The frame of one message; an ``invalid`` Error (one line) if it is none."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > MAX_FRAME:
        raise FrameTooLarge(size)
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise Error("invalid", f"malformed JSON: {getattr(error, 'msg', error)}") from None
    if not isinstance(data, dict):
        raise Error("invalid", "a frame must be a JSON object")
    tag = data.get("type")
    cls = _BY_TAG.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise Error("invalid", f"not a frame type: {str(tag)[:40]!r}")
    try:
        frame: Frame = serde.structure(
            {k: v for k, v in data.items() if k != "type"}, cls, converter=converter
        )
    except SpecError as error:
        raise Error("invalid", f"a bad {tag} frame: {error}") from None
    return frame


def log_items_frames(sub: int, encoded_lines: list[str]) -> list[str]:
    """:class:`Items` frames of subscription ``sub`` holding ``log`` messages already
    encoded (:func:`~dployr.protocol.codec.encode_log_batch`'s parts), each frame within
    :data:`ITEMS_CHARS` characters of items (at least one line each)."""
    return [
        f'{{"type":"items","sub":{sub},"items":[{inside}]}}'
        for inside in codec.join_within(encoded_lines, ITEMS_CHARS)
    ]


def check_hello(hello: Hello) -> None:
    """Refuse a hello this control plane cannot speak with (an ``invalid`` Error)."""
    if hello.protocol > WIRE_VERSION:
        raise Error(
            "invalid",
            f"the agent speaks wire version {hello.protocol}, newer than this control "
            f"plane's {WIRE_VERSION}: upgrade the control plane first",
        )
    if hello.protocol < 1:
        raise Error("invalid", f"not a wire version: {hello.protocol}")


class AgentChannel(Protocol):
    """One accepted agent WebSocket, as the gateway hands it to the hub: text messages in
    and out. When the peer goes, the task serving the channel is cancelled."""

    async def send(self, text: str) -> None:
        """Send one message."""
        ...

    async def receive(self) -> str | bytes:
        """The next message."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Close the channel with a WebSocket code and a one-line reason."""
        ...


class AgentDoor(Protocol):
    """What the gateway's agent door (dployr/gateway/agents.py) needs of the control plane."""

    async def join(self, token: str, address: str) -> tuple[str, str]:
        """Redeem a join token: (instance name, credential); an Error if refused."""
        ...

    async def admit(self, credential: str) -> str | None:
        """The instance a credential belongs to, or None (unknown or revoked)."""
        ...

    async def serve(self, credential: str, channel: AgentChannel, address: str) -> None:
        """Serve one accepted agent channel until it ends."""
        ...
