"""The wire's frames: each survives encoding and back; what is not a valid frame is refused
with an ``invalid`` Error (one line), and a frame over the size limit never gets decoded."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dployr.agent.backoff import CAP, FIRST, QUICK, reconnect_delay
from dployr.cluster.remote import RemoteHandle
from dployr.logs.values import LogBatch
from dployr.models import Health, ServiceStatus
from dployr.protocol import codec
from dployr.protocol import messages as m
from dployr.protocol import wire as w
from dployr.protocol.errors import Error
from dployr.protocol.events import StatusChanged
from tests.protocol.strategies import names, values

ids = st.from_regex(r"[0-9a-f]{1,24}", fullmatch=True)
counts = st.integers(0, 2**53 - 1)
requests = st.sampled_from(m.REQUESTS).flatmap(values)
items = st.lists(
    st.sampled_from([StatusChanged, codec.LogLine, codec.ServiceSample]).flatmap(values),
    max_size=4,
).map(tuple)

control_planes = st.lists(
    st.builds(w.ControlPlane, ids, st.sampled_from(["http://10.0.0.1:7879", "https://cp.example"])),
    max_size=3,
).map(tuple)

FRAMES: dict[type, st.SearchStrategy[Any]] = {
    w.Hello: st.builds(w.Hello, names, st.just("0.1"), st.integers(1, 9), st.just(("calls",)), ids),
    w.HelloAck: st.builds(w.HelloAck, names, st.integers(1, 9), st.floats(0.1, 60))
    | st.builds(w.HelloAck, names, st.integers(1, 9), st.floats(0.1, 60), ids, control_planes),
    w.Call: st.builds(w.Call, ids, requests),
    w.Result: st.builds(w.Result, ids, st.just({"name": "web"}))
    | st.builds(w.Result, ids, st.none(), values(Error)),
    w.Ack: st.builds(w.Ack, ids),
    w.Update: st.builds(
        w.Update,
        counts,
        ids,
        st.booleans(),
        counts,
        st.lists(values(m.ServiceInfo), max_size=3).map(tuple),
        st.lists(names, max_size=2).map(tuple),
        st.none() | st.just({"ts": 1.0, "cpu_percent": 3.0}),
    ),
    w.Subscribe: st.builds(
        w.Subscribe,
        counts,
        st.sampled_from(w.SUBSCRIPTION_KINDS),
        st.none() | names,
        st.none() | counts,
        st.none() | st.integers(0, 1000),
        st.none() | st.just(("stderr", "stdout")),
    ),
    w.Items: st.builds(w.Items, counts, items),
    w.SubscriptionGap: st.builds(w.SubscriptionGap, counts, counts, counts, counts),
    w.Ended: st.builds(w.Ended, counts, st.none() | values(Error)),
    w.Unsubscribe: st.builds(w.Unsubscribe, counts),
    w.Ping: st.builds(w.Ping, counts),
    w.Pong: st.builds(w.Pong, counts),
    w.ControlPlanes: st.builds(w.ControlPlanes, control_planes),
    w.UploadChunk: st.builds(
        w.UploadChunk,
        st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
        counts,
        counts,
        st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
        st.binary(max_size=64).map(lambda data: base64.b64encode(data).decode()),
    ),
    w.UploadAck: st.builds(
        w.UploadAck,
        st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
        counts,
        st.none() | values(Error),
    ),
}


def test_every_frame_type_has_a_strategy() -> None:
    assert set(FRAMES) == set(w.FRAME_TAGS)


@pytest.mark.parametrize("cls", list(FRAMES), ids=lambda cls: w.FRAME_TAGS[cls])
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_every_frame_survives_the_wire(cls: type, data: st.DataObject) -> None:
    frame = data.draw(FRAMES[cls])
    text = w.encode_frame(frame)
    assert json.loads(text)["type"] == w.FRAME_TAGS[cls]
    assert w.decode_frame(text) == frame


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not json", "malformed JSON"),
        ("[1, 2]", "a frame must be a JSON object"),
        ('{"type": "launch"}', "not a frame type: 'launch'"),
        ('{"type": "ping"}', "a bad ping frame"),
        ('{"type": "ping", "seq": -1}', "a bad ping frame"),
        ('{"type": "ping", "seq": 1, "extra": 2}', "a bad ping frame"),
        ('{"type": "call", "id": "c1", "request": {"type": "log"}}', "missing field"),
        ('{"type": "call", "id": "c1", "request": {"type": "status", "x": 1}}', "missing field"),
        ('{"type": "call", "id": "", "request": {"type": "list_services"}}', "a bad call frame"),
        ('{"type": "items", "sub": 1, "items": {}}', "a bad items frame"),
        (
            '{"type": "update", "seq": 1, "epoch": "e", "full": true, "generation": 1,'
            ' "services": [], "machine": 3}',
            "a bad update frame",
        ),
        *(
            (
                json.dumps(
                    {"type": "control_planes", "control_planes": [{"id": "cp", "url": url}]}
                ),
                "a bad control_planes frame",
            )
            for url in ("ftp://cp", "http://", "cp:7879", "http://[::1", "http://" + "a" * 2000)
        ),
    ],
)
def test_what_is_not_a_frame_is_refused_in_one_line(text: str, says: str) -> None:
    with pytest.raises(Error) as refused:
        w.decode_frame(text)
    assert refused.value.code == "invalid"
    assert says in refused.value.message
    assert "\n" not in refused.value.message


def test_a_frame_over_the_limit_is_refused_before_it_is_read() -> None:
    text = '{"type":"ping","seq":1,"pad":"' + "x" * w.MAX_FRAME + '"}'
    with pytest.raises(w.FrameTooLarge, match="larger than the wire's"):
        w.decode_frame(text)
    huge = w.Result("c1", reply={"text": "é" * (w.MAX_FRAME // 2)})
    with pytest.raises(w.FrameTooLarge):
        w.encode_frame(huge)


def test_a_hello_of_a_newer_major_version_is_refused_with_a_reason() -> None:
    w.check_hello(w.Hello("a1", "0.1", w.WIRE_VERSION, (), "e1"))
    with pytest.raises(Error, match="newer than this control plane's"):
        w.check_hello(w.Hello("a1", "9.0", w.WIRE_VERSION + 1, (), "e1"))


def test_a_log_batch_splits_into_items_frames_within_the_limit() -> None:
    lines = [f"line {i} " + "x" * 500 for i in range(2000)]
    payload = "\n".join(lines).encode()
    batch = LogBatch(1, 1.0, "stdout", None, payload, len(lines))
    parts = codec.encode_log_batch(batch, w.ITEMS_CHARS)
    texts = w.log_items_frames(7, parts)
    assert len(texts) > 1
    cursors = []
    for text in texts:
        assert len(text.encode()) <= w.ITEMS_CHARS + 100
        frame = w.decode_frame(text)
        assert isinstance(frame, w.Items)
        assert frame.sub == 7
        cursors += [line.cursor for line in frame.items]
    assert cursors == list(range(1, 2001))


def test_the_reconnect_delay_grows_jittered_and_capped() -> None:
    rng = random.Random(7)
    delays = [reconnect_delay(attempt, rng) for attempt in range(QUICK + 40)]
    assert all(FIRST / 2 <= d <= FIRST for d in delays[:QUICK])  # quick at first
    assert FIRST <= delays[QUICK] <= 2 * FIRST  # then doubling
    assert all(CAP / 2 <= d <= CAP for d in delays[QUICK + 10 :])
    assert len(set(delays[QUICK + 10 :])) > 20  # jittered: agents cut off together spread out


def test_an_update_too_large_for_one_frame_is_split_and_applies_whole() -> None:
    info = m.ServiceInfo(
        name="web",
        instance="a1",
        status=ServiceStatus.RUNNING,
        health=Health.HEALTHY,
        pid=1234,
        port=8000,
        restarts=0,
        deployment=1,
        description="x" * 300,
        deploying=None,
        since=1.0,
        message="started",
        created_at=1.0,
        last_deploy_at=1.0,
    )
    services = tuple(attrs.evolve(info, name=f"web-{n:05}") for n in range(5000))
    update = w.Update(7, "e1", True, 3, services, (), {"ts": 1.0}, ())
    frames = w.encode_updates(update)
    assert len(frames) > 2
    assert all(len(frame.encode()) <= w.MAX_FRAME for frame in frames)
    decoded = [w.decode_frame(frame) for frame in frames]
    assert [u.seq for u in decoded] == list(range(7, 7 + len(frames)))  # type: ignore[union-attr]
    assert [u.full for u in decoded] == [True] + [False] * (len(frames) - 1)  # type: ignore[union-attr]

    remote = RemoteHandle("a1")
    for frame in decoded:
        assert isinstance(frame, w.Update)
        assert remote.on_update(frame)
    assert [s.name for s in remote.services()] == [s.name for s in services]
