"""What an instance offers whoever drives it: :class:`InstanceHandle`.

The gateway serves any InstanceHandle: the engine's local one (dployr/engine/handle.py)
today, one that talks to an instance on another machine later. Every method answers with
protocol values and fails with an :class:`~dployr.protocol.errors.Error`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Protocol, TypeVar

from dployr.logs.values import LogBatch, LogLine
from dployr.metrics import InstanceSample, ServiceSample
from dployr.protocol.events import Change, SupervisionReport
from dployr.protocol.feed import Gap
from dployr.protocol.messages import Request

R = TypeVar("R")
T_co = TypeVar("T_co", covariant=True)

LogEntry = list[LogLine] | tuple[LogBatch, ...] | Gap
"""What following a log yields: lines of history, live batches, or a gap it missed."""


class Feed(Protocol[T_co]):
    """A bounded subscription: iterate it for runs of items and :class:`Gap` notices (what
    did not fit while the reader was slow); close it, or leave its ``with``, to end it."""

    def __enter__(self) -> Feed[T_co]: ...

    def __exit__(self, *exc: object) -> None: ...

    def __aiter__(self) -> AsyncIterator[Sequence[T_co] | Gap]: ...

    def close(self) -> None: ...


class InstanceHandle(Protocol):
    """An instance: requests in, replies out; its changes, logs and metrics as feeds."""

    @property
    def instance_name(self) -> str:
        """The name of the instance behind the handle."""
        ...

    @property
    def generation(self) -> int:
        """Grows whenever anything the services' info shows changes (a cache key)."""
        ...

    async def request(self, request: Request[R], /) -> R:
        """Carry out one request and return its reply, or raise an Error."""
        ...

    def check_service(self, name: str, /) -> None:
        """Raise an Error (``invalid``, ``not_found``) unless ``name`` is a service of the
        instance: a feed answers it before it accepts."""
        ...

    def follow_logs(
        self,
        name: str,
        *,
        after: int | None = None,
        tail: int | None = None,
        streams: frozenset[str] | None = None,
    ) -> AsyncGenerator[LogEntry, None]:
        """A service's log: history after cursor ``after`` (or the last ``tail`` lines),
        then live batches, with no gap and no duplicate at the seam. Use it in ``async with
        contextlib.aclosing(...)``: closing it unsubscribes."""
        ...

    def subscribe_changes(self) -> Feed[Change]:
        """Every service's status, health and deployment changes, and the disk's."""
        ...

    def subscribe_supervision(self) -> Feed[SupervisionReport]:
        """The supervision reports of the instance's whole tree."""
        ...

    def subscribe_metrics(self) -> Feed[ServiceSample]:
        """Each service's sample, every metrics round."""
        ...

    def latest_samples(self) -> list[ServiceSample]:
        """The last sample of every running service."""
        ...

    def latest_machine(self) -> InstanceSample | None:
        """The last sample of the machine itself."""
        ...
