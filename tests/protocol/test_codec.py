"""The codec: every message survives encoding to JSON and back, and bad input is refused
with an ``invalid`` Error (one line), never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dployr.logs.values import LogLine
from dployr.models import ServiceStatus
from dployr.protocol import codec
from dployr.protocol import messages as m
from dployr.protocol.errors import Error
from dployr.protocol.events import StatusChanged
from dployr.protocol.feed import Gap
from tests.protocol.strategies import values


@pytest.mark.parametrize("cls", codec.MESSAGES, ids=lambda cls: codec.TAGS[cls])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_message_survives_json_and_back(cls: type, data: st.DataObject) -> None:
    message = data.draw(values(cls))
    text = codec.dumps(message)
    assert json.loads(text)["type"] == codec.TAGS[cls]
    assert codec.loads(text) == message
    assert codec.decode_envelope(json.loads(json.dumps(codec.encode_envelope(message)))) == message


@pytest.mark.parametrize("request_cls", m.REQUESTS, ids=lambda cls: cls.__name__)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_reply_survives_json_and_back_as_a_rest_body(
    request_cls: type[m.Request[Any]], data: st.DataObject
) -> None:
    reply = data.draw(values(m.reply_type(request_cls)))
    body = json.loads(json.dumps(codec.unstructure(reply)))
    assert "type" not in body or not isinstance(body, dict)  # a REST answer as it was
    assert codec.decode_reply(request_cls, body) == reply


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(values(LogLine), max_size=5))
def test_the_fast_log_line_paths_say_what_the_codec_says(lines: list[LogLine]) -> None:
    # A remote follow relays every line a service writes: its encoding and decoding skip
    # the converter, and must read and write exactly the same JSON.
    assert codec.encode_log_lines(lines, 1 << 20) == (
        [",".join(codec.dumps(line) for line in lines)] if lines else []
    )
    for line in lines:
        data = json.loads(codec.dumps(line))
        assert codec.decode_item(data) == codec.decode(data) == line


@pytest.mark.parametrize(
    "changed",
    [
        {"cursor": 0},
        {"cursor": True},
        {"cursor": 1.0},
        {"ts": "1"},
        {"stream": "stdin"},
        {"line": None},
        {"deployment": -1},
        {"deployment": False},
        {"continued": 1},
        {"extra": 1},
    ],
)
def test_a_log_line_off_the_fast_path_is_read_as_the_codec_reads_it(
    changed: dict[str, object],
) -> None:
    line = LogLine(cursor=3, ts=1.5, stream="stdout", line="hi", deployment=2)
    data = json.loads(codec.dumps(line)) | changed

    def outcome(decode: Any) -> object:
        try:
            return decode(data)
        except Error as error:
            return (error.code, error.message)

    assert outcome(codec.decode_item) == outcome(codec.decode)


def test_the_feeds_messages_keep_their_documented_shape() -> None:
    change = StatusChanged("web", "local", ServiceStatus.RUNNING, ServiceStatus.DEPLOYING, 5.0)
    assert codec.encode(change) == {
        "type": "status",
        "service": "web",
        "instance": "local",
        "status": "running",
        "previous": "deploying",
        "ts": 5.0,
    }
    assert codec.encode(Gap(3, 10, 12)) == {"type": "gap", "missed": 3, "from": 10, "to": 12}
    assert codec.encode(Error("not_found", "no service named 'x'")) == {
        "type": "error",
        "code": "not_found",
        "message": "no service named 'x'",
    }


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{", "malformed JSON"),
        ("[1]", "a message must be a JSON object"),
        ('{"type": "nope"}', "not a message type: 'nope'"),
        ('{"cursor": 1}', "not a message type: 'None'"),
        ('{"type": "gap", "missed": 1, "from": 2}', "to"),
        ('{"type": "gap", "missed": "1", "from": 2, "to": 3}', "whole number"),
        (
            '{"type": "status", "service": "w", "instance": "l", "status": "x",'
            ' "previous": "running", "ts": 1}',
            "status",
        ),
        ('{"type": "error", "code": "teapot", "message": "x"}', "not an error code"),
        ('{"type": "get_service", "name": "Not A Name"}', "invalid service name"),
        ('{"type": "logs", "lines": [{"cursor": 1}]}', "log message"),
    ],
)
def test_what_is_no_message_is_refused_in_one_line(text: str, words: str) -> None:
    with pytest.raises(Error, match=words) as refused:
        codec.loads(text)
    assert refused.value.code == "invalid"
    assert "\n" not in refused.value.message


def test_a_newer_protocol_version_is_refused() -> None:
    envelope = {"v": codec.PROTOCOL_VERSION + 1, "message": codec.encode(m.ListServices())}
    with pytest.raises(Error, match="newer than this dployr's") as refused:
        codec.decode_envelope(envelope)
    assert refused.value.code == "invalid"


def test_the_protocol_imports_no_runtime() -> None:
    """Pure: importing the protocol pulls in no trio, quart, sqlite3 or psutil."""
    script = (
        "import sys, dployr.protocol, dployr.protocol.codec, dployr.protocol.handle\n"
        "print(sorted(m for m in ('trio', 'quart', 'sqlite3', 'psutil') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
