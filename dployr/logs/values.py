"""The values of the log history: streams, lines and batches of lines.

A service's log is a sequence of lines, each with a **cursor**: a number that grows by one
per line, starts at 1 and carries on across daemon restarts, so that "the lines after
cursor 1234" always means the same lines. Lines travel, are stored and are published in
batches (:class:`LogBatch`): the lines one read of a pipe produced, which share a stream,
a timestamp and a deployment. :class:`LogLine` is one line as a reader sees it.

Pure values, no I/O and no trio.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final

import attrs

from dployr.errors import SpecError

STREAMS: Final = ("stdout", "stderr", "build", "system")
"""Where a line came from: the service's output and error pipes, a build step, or dployr
itself (supervision and deployment messages such as "exited with code 1")."""

MAX_CURSOR: Final = 2**63 - 1
"""The largest cursor (and deployment id) the on-disk format can hold."""


class InvalidStream(SpecError):
    """A stream name that is not one of :data:`STREAMS`."""


class InvalidBatch(SpecError):
    """A batch of log lines whose parts do not agree with each other."""


def check_stream(stream: object) -> str:
    """Return ``stream`` if it is one of :data:`STREAMS`, else raise :class:`InvalidStream`."""
    if stream not in STREAMS:
        raise InvalidStream(f"unknown log stream {stream!r}: use one of {', '.join(STREAMS)}")
    return stream


def check_streams(streams: Iterable[str] | None) -> frozenset[str] | None:
    """A validated set of stream names, or None (meaning every stream) when given None."""
    if streams is None:
        return None
    if isinstance(streams, str):
        # A bare "stdout" would otherwise be read as the streams "s", "t", "d" ...
        raise InvalidStream(f"give a set of log streams, not the string {streams!r}")
    return frozenset(check_stream(stream) for stream in streams)


def _check_stream(_: object, __: object, value: str) -> None:
    check_stream(value)


def _check_cursor(_: object, __: object, value: int) -> None:
    if not 1 <= value <= MAX_CURSOR:
        raise InvalidBatch(f"a log cursor must be between 1 and {MAX_CURSOR}, not {value}")


def _check_ts(_: object, __: object, value: float) -> None:
    if not math.isfinite(value):
        raise InvalidBatch(f"a log timestamp must be a finite number of seconds, not {value}")


def _check_deployment(_: object, __: object, value: int | None) -> None:
    if value is not None and not 0 <= value <= MAX_CURSOR:
        raise InvalidBatch(f"a deployment id must be between 0 and {MAX_CURSOR}, not {value}")


@attrs.frozen
class LogLine:
    """One line of a service's log, as readers receive it."""

    cursor: int = attrs.field(validator=_check_cursor)
    """Its position in the service's log: 1 for the first line ever, one more per line."""
    ts: float
    """When dployr read it: wall-clock Unix seconds (never less than the line before's)."""
    stream: str = attrs.field(validator=_check_stream)
    """One of :data:`STREAMS`."""
    line: str
    """The text, without its newline; undecodable bytes are shown as U+FFFD."""
    deployment: int | None = attrs.field(validator=_check_deployment)
    """The deployment that was running (or being built) when it was written, if any."""
    continued: bool = False
    """True when the line was too long and goes on in the next line (see ``MAX_LINE``)."""


def check_payload(payload: bytes, count: int, continued: frozenset[int]) -> None:
    """Raise :class:`InvalidBatch` unless ``payload`` holds ``count`` lines of UTF-8.

    The lines are joined by newlines (no newline after the last); ``continued`` must be
    indices of them. No line at all is a count of 0 and an empty payload; one empty line,
    a count of 1 and an empty payload.
    """
    if count < 0 or (count == 0 and payload):
        raise InvalidBatch(f"log lines with a payload must count one line or more, not {count}")
    if count and payload.count(b"\n") != count - 1:
        raise InvalidBatch(
            f"a payload of {count} log lines must hold them separated by {count - 1} newlines"
        )
    if not payload.isascii():
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidBatch("the payload of log lines must be valid UTF-8") from None
    if continued and not 0 <= min(continued) <= max(continued) < count:
        raise InvalidBatch("the continued lines must be indices of the lines")


def split_payload(payload: bytes, count: int) -> list[str]:
    """The text of the ``count`` lines ``payload`` holds (see :func:`check_payload`)."""
    return payload.decode("utf-8").split("\n") if count else []


def _check_batch(batch: LogBatch, _: object, continued: frozenset[int]) -> None:
    if batch.count < 1:
        raise InvalidBatch("a batch of log lines must hold at least one line")
    if batch.first_cursor + batch.count - 1 > MAX_CURSOR:
        raise InvalidBatch(f"a batch's last cursor must be at most {MAX_CURSOR}")
    check_payload(batch.payload, batch.count, continued)


@attrs.frozen
class LogBatch:
    """Consecutive lines of one stream, read together: the unit that is stored and published.

    Lines ``first_cursor`` to :attr:`last_cursor` share the timestamp, the stream and the
    deployment. They are held as they are stored, ``payload`` (the lines encoded as UTF-8
    and joined by newlines) and ``count``: a batch weighs its bytes, not a Python string
    per line, until someone asks for the text (:attr:`lines`, :meth:`to_lines`).
    """

    first_cursor: int = attrs.field(validator=_check_cursor)
    """The cursor of the first line."""
    ts: float = attrs.field(validator=_check_ts)
    """When the lines were read: wall-clock Unix seconds."""
    stream: str = attrs.field(validator=_check_stream)
    """One of :data:`STREAMS`."""
    deployment: int | None = attrs.field(validator=_check_deployment)
    """The deployment the lines belong to, if any."""
    payload: bytes
    """The lines as UTF-8, joined by ``b"\\n"``."""
    count: int
    """How many lines: at least one."""
    continued: frozenset[int] = attrs.field(default=frozenset(), validator=_check_batch)
    """Indices of the lines that go on in the next line (pieces of an over-long line)."""

    @classmethod
    def trusted(
        cls,
        *,
        first_cursor: int,
        ts: float,
        stream: str,
        deployment: int | None,
        payload: bytes,
        count: int,
        continued: frozenset[int],
    ) -> LogBatch:
        """A batch whose lines are known to agree with their payload (a checked
        :class:`~dployr.logs.framing.Lines` value): only the header fields are checked.

        The log pump's path: checking the payload again would cost another pass over
        every byte a service writes.
        """
        _check_cursor(None, None, first_cursor)
        _check_ts(None, None, ts)
        check_stream(stream)
        _check_deployment(None, None, deployment)
        if count < 1 or first_cursor + count - 1 > MAX_CURSOR:
            raise InvalidBatch(f"a batch of {count} log lines cannot start at {first_cursor}")
        batch: LogBatch = object.__new__(cls)
        for name, value in (
            ("first_cursor", first_cursor),
            ("ts", ts),
            ("stream", stream),
            ("deployment", deployment),
            ("payload", payload),
            ("count", count),
            ("continued", continued),
        ):
            object.__setattr__(batch, name, value)
        return batch

    @property
    def last_cursor(self) -> int:
        """The cursor of the last line."""
        return self.first_cursor + self.count - 1

    @property
    def nbytes(self) -> int:
        """The size of the payload in bytes."""
        return len(self.payload)

    @property
    def lines(self) -> tuple[str, ...]:
        """The lines' text, without newlines (split from the payload on each call)."""
        return tuple(split_payload(self.payload, self.count))

    def to_lines(self) -> list[LogLine]:
        """The batch as one :class:`LogLine` per line, oldest first."""
        first, ts, stream, deployment = self.first_cursor, self.ts, self.stream, self.deployment
        continued = self.continued
        return [
            LogLine(first + index, ts, stream, line, deployment, index in continued)
            for index, line in enumerate(split_payload(self.payload, self.count))
        ]


def lines_of(batches: Iterable[LogBatch]) -> list[LogLine]:
    """The lines of ``batches``, one :class:`LogLine` each, in order."""
    return [line for batch in batches for line in batch.to_lines()]
