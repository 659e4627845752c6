"""The messages of the WebSocket feeds besides the changes of :mod:`dployr.protocol.events`.

The log feed sends :class:`~dployr.logs.values.LogLine` messages (``type: log``), or, by
default, :class:`LogLines` (``type: logs``): every line that arrived together in one
message. Every feed sends a :class:`Gap` for what a slow reader missed. The metrics feed
sends :class:`~dployr.metrics.ServiceSample` messages (``type: metrics``).
docs/feeds.md shows each message as JSON.
"""

from __future__ import annotations

import attrs

from dployr.logs.values import LogLine


@attrs.frozen
class LogLines:
    """Log lines, oldest first, sent as one message."""

    lines: tuple[LogLine, ...]


@attrs.frozen
class Gap:
    """A reader fell behind and missed ``missed`` items: the log lines ``first`` to
    ``last`` (cursors: read them over REST), or the events or samples of that range of
    the topic's sequence numbers. The feed goes on after it."""

    missed: int
    first: int
    last: int
