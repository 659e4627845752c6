"""The local implementation of :class:`~dployr.protocol.handle.InstanceHandle`.

:class:`LocalHandle` drives an :class:`~dployr.engine.instance.Instance` of this process:
it routes each request of :mod:`dployr.protocol.messages` to the instance and turns the
engine's exceptions into the protocol's :class:`~dployr.protocol.errors.Error` with
:func:`error_of`, the one table of which engine error is which code. Its feeds hand out the
instance's topics, their gaps and supervision events turned into protocol values.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast

from dployr.engine import image_store, jobs, sources
from dployr.engine.errors import Conflict
from dployr.engine.proxy import PortInUse
from dployr.engine.sources import SourceError
from dployr.errors import ActorError, DployrError
from dployr.logs.history import HistoryClosed
from dployr.metrics import InstanceSample, Sample, ServiceSample
from dployr.models import Source, check_name
from dployr.protocol import messages as m
from dployr.protocol.errors import Error, ErrorCode
from dployr.protocol.events import Change, SupervisionReport
from dployr.protocol.handle import LogEntry
from dployr.store import codes as store_codes
from dployr.supervision import SupervisionEvent
from dployr.supervision import topic as topics
from dployr.supervision.feed import TopicFeed, protocol_gap

if TYPE_CHECKING:
    from dployr.engine.instance import Instance

log = logging.getLogger("dployr.engine")

R = TypeVar("R")
S = TypeVar("S")
T = TypeVar("T")

ERROR_CODES: tuple[tuple[tuple[type[BaseException], ...], ErrorCode], ...] = (
    ((Conflict, PortInUse), "conflict"),
    ((SourceError,), "invalid"),
    ((ActorError, HistoryClosed), "unavailable"),
    *store_codes.ERROR_CODES,
)
"""Which engine and store errors are which code, in order (the first that matches wins):
the engine's own, then the store's (:data:`dployr.store.codes.ERROR_CODES`); any other
error is ``internal``. A SourceError reaches a request only from the checks of the remote,
branch or commit it names."""


def error_of(error: BaseException) -> Error:
    """The protocol error for an exception raised while carrying out a request."""
    if isinstance(error, Error):
        return error
    for classes, code in ERROR_CODES:
        if isinstance(error, classes):
            return Error(code, " ".join(str(error).split()))
    if isinstance(error, DployrError):
        return Error("internal", " ".join(str(error).split()))
    return Error("internal", f"internal error: {type(error).__name__}")


@contextlib.contextmanager
def protocol_errors() -> Iterator[None]:
    """Raise the engine's errors as protocol errors (the cause kept); log the unexpected."""
    try:
        yield
    except Error:
        raise
    except Exception as exc:
        error = error_of(exc)
        if error.code == "internal":
            log.exception("a request failed")
        raise error from exc


class MappedFeed(TopicFeed[S, T]):
    """A topic subscription whose items are turned into protocol values (``None``: left
    out) and whose gaps into :class:`~dployr.protocol.feed.Gap`."""

    def __init__(self, subscription: topics.Subscription[S], render: Callable[[S], T | None]):
        super().__init__(subscription)
        self._render = render

    def runs(self, batch: list[S]) -> Iterator[list[T]]:
        items = [item for item in map(self._render, batch) if item is not None]
        if items:
            yield items


def supervision_report(event: SupervisionEvent) -> SupervisionReport:
    """One supervision event as the feeds show it."""
    return SupervisionReport(
        kind=event.kind,
        supervisor="/".join(event.supervisor),
        child=event.child.id,
        incarnation=event.child.incarnation,
        message=event.describe(),
    )


def _service_sample(sample: Sample) -> ServiceSample | None:
    return sample if isinstance(sample, ServiceSample) else None


def _same(change: Change) -> Change:
    return change


class LocalHandle:
    """An instance of this process, driven through the protocol (see the module)."""

    def __init__(self, instance: Instance) -> None:
        self._instance = instance
        i = instance
        self._routes: dict[type[Any], Callable[[Any], Awaitable[Any]]] = {
            m.Deploy: i.deploy,
            m.Start: lambda r: i.service(r.name).start(),
            m.Stop: lambda r: i.service(r.name).stop(),
            m.Restart: lambda r: i.service(r.name).restart(hard=r.hard),
            m.Rollback: lambda r: i.service(r.name).rollback(r.deployment),
            m.Delete: lambda r: i.delete(r.name, purge=r.purge, purge_image=r.purge_image),
            m.PruneImages: lambda r: image_store.prune(i),
            m.GetService: lambda r: _now(i.service(r.name).info()),
            m.ListServices: lambda r: _now(tuple(s.info() for _, s in sorted(i.services.items()))),
            m.GetSettings: lambda r: _now(i.service(r.name).settings_view()),
            m.UpdateSettings: lambda r: i.service(r.name).update_settings(r.change),
            m.ListEnv: lambda r: _now(i.service(r.name).env_listing()),
            m.SetEnv: lambda r: i.service(r.name).set_env(
                dict(r.values), secret=r.secret, restart=r.restart
            ),
            m.UnsetEnv: lambda r: i.service(r.name).unset_env(r.keys, restart=r.restart),
            m.ReadLogs: i.read_logs,
            m.ListDeployments: lambda r: _now(
                tuple(i.store.deployments(i.service(r.name).name, max(1, min(r.limit, 1000))))
            ),
            m.GetInstance: lambda r: _now(i.info()),
            # An instance served alone (no cluster around it) lists itself.
            m.ListInstances: lambda r: _now((m.InstanceView.of(i.info()),)),
            m.ReadMetrics: lambda r: _now(i.read_metrics(r)),
            m.RotateKey: lambda r: _now(i.rotate_key()),
            **jobs.routes(i),  # scheduled jobs' runs (dployr/engine/jobs)
        }

    @property
    def generation(self) -> int:
        """Grows whenever anything the services' info shows changes (a cache key)."""
        return self._instance.generation

    @property
    def instance_name(self) -> str:
        """The name of the instance behind this handle."""
        return self._instance.name

    async def request(self, request: m.Request[R], /) -> R:
        """Carry out one request and return its reply, or raise an Error."""
        route = self._routes.get(type(request))
        if route is None:
            raise TypeError(f"not an instance request: {request!r}")
        with protocol_errors():
            _check_source(request)
            return cast(R, await route(request))

    def check_service(self, name: str, /) -> None:
        """Raise an Error unless ``name`` is a service of the instance."""
        with protocol_errors():
            self._instance.service(check_name(name))

    def follow_logs(
        self,
        name: str,
        *,
        after: int | None = None,
        tail: int | None = None,
        streams: frozenset[str] | None = None,
    ) -> AsyncGenerator[LogEntry, None]:
        """A service's log lines: history from ``after`` (or the last ``tail``), then live
        batches (the same objects for every follower). Use it in ``async with
        contextlib.aclosing(...)``: closing it unsubscribes."""
        with protocol_errors():
            book = self._instance.service(name).book
        return _protocol_gaps(book.follow_batches(after=after, tail=tail, streams=streams))

    def subscribe_changes(self) -> MappedFeed[Change, Change]:
        """Every service's status, health and deployment changes, and the disk's."""
        return MappedFeed(self._instance.changes.subscribe(), _same)

    def subscribe_supervision(self) -> MappedFeed[SupervisionEvent, SupervisionReport]:
        """The supervision reports of the whole tree."""
        return MappedFeed(self._instance.events.subscribe(), supervision_report)

    def subscribe_metrics(self) -> MappedFeed[Sample, ServiceSample]:
        """Each service's sample, every metrics round."""
        return MappedFeed(self._instance.metrics.samples.subscribe(), _service_sample)

    def latest_samples(self) -> list[ServiceSample]:
        """The last sample of every running service (for the Prometheus endpoint)."""
        return self._instance.metrics.latest_services()

    def latest_machine(self) -> InstanceSample | None:
        """The last sample of the machine itself."""
        return self._instance.metrics.latest_instance()


def _check_source(request: object) -> None:
    """Refuse a remote, branch or commit that a fetch would refuse, before anything is
    stored or stopped."""
    source: Source | None = None
    if isinstance(request, m.Deploy) and request.settings is not None:
        if request.settings.image is not None:
            return  # an image's reference is checked when it is pulled
        source = request.settings.source
    elif isinstance(request, m.UpdateSettings):
        source = request.change.source
    if source is None:
        return
    sources.check_remote(source.remote)
    if source.branch is not None:
        sources.check_branch(source.branch)
    if source.commit is not None:
        sources.check_commit(source.commit)


async def _protocol_gaps(
    entries: AsyncGenerator[list[Any] | tuple[Any, ...] | topics.Gap, None],
) -> AsyncGenerator[LogEntry, None]:
    async with contextlib.aclosing(entries):
        async for entry in entries:
            if isinstance(entry, topics.Gap):
                yield protocol_gap(entry)
            else:
                yield entry


async def _now(value: R) -> R:
    return value
