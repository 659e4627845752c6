"""Service logs: framing output into lines, the history on disk, the live feed.

* :mod:`~dployr.logs.framing` cuts the bytes a service writes into lines (pure);
* :mod:`~dployr.logs.values` holds the values: streams, :class:`LogLine`, :class:`LogBatch`;
* :mod:`~dployr.logs.history` keeps one service's lines in bounded segments on disk;
* :mod:`~dployr.logs.book` joins a history and a live topic: the :class:`LogBook` the rest
  of dployr appends to, reads from and follows.

The public names are re-exported here. The book's are imported on first use: it needs
trio, and the values stay pure (the protocol imports them).
"""

from typing import TYPE_CHECKING, Any

from dployr.logs.framing import MAX_LINE, Lines, LineSplitter
from dployr.logs.history import (
    DEFAULT_MAX_BYTES,
    CursorMismatch,
    HistoryClosed,
    HistoryCorrupt,
    HistoryError,
    HistoryInUse,
    HistoryStatistics,
    HistoryWriteFailed,
    LogHistory,
)
from dployr.logs.values import (
    STREAMS,
    InvalidBatch,
    InvalidStream,
    LogBatch,
    LogLine,
    check_stream,
    check_streams,
)

if TYPE_CHECKING:
    from dployr.logs.book import DEFAULT_TOPIC_CAPACITY, LogBook, LogBookStatistics


def __getattr__(name: str) -> Any:
    if name in ("DEFAULT_TOPIC_CAPACITY", "LogBook", "LogBookStatistics"):
        from dployr.logs import book  # noqa: PLC0415 (trio, on first use)

        return getattr(book, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TOPIC_CAPACITY",
    "MAX_LINE",
    "STREAMS",
    "CursorMismatch",
    "HistoryClosed",
    "HistoryCorrupt",
    "HistoryError",
    "HistoryInUse",
    "HistoryStatistics",
    "HistoryWriteFailed",
    "InvalidBatch",
    "InvalidStream",
    "LineSplitter",
    "Lines",
    "LogBatch",
    "LogBook",
    "LogBookStatistics",
    "LogHistory",
    "LogLine",
    "check_stream",
    "check_streams",
]
