"""The cluster as one instance: :class:`ClusterHandle`, an InstanceHandle over its members.

The gateway serves one :class:`~dployr.protocol.handle.InstanceHandle`. With a cluster, that
handle is this router: the local instance plus the members a :class:`Members` source
reaches (the hub's connected agents; real in-process instances in the tests). It routes:

* a request naming a service goes to the member the service belongs to, by *placement*
  (service -> instance, kept in the :class:`~dployr.store.cluster.ClusterState`); a service
  with no placement is the local instance's (every service was, before the cluster);
* a service whose instance is away answers ``unavailable``, naming when it was last seen;
* a :class:`~dployr.protocol.messages.Deploy` goes to the instance it names, else to the one
  the service has, else to the local one, else (when the local instance takes no
  services: ``dployr up --no-local-services``) to the least loaded connected one
  (:mod:`~dployr.cluster.placement`). Naming another instance than the service's moves
  it: deployed there first, then deleted on the old one once the new deployment succeeded;
* the services list merges every member's, plus the last-known rows (``stale``) of the away
  members; the feeds (changes, supervision, metrics) merge every member's, members that
  connect later included;
* the instance requests (list, add, remove) are answered from the ClusterState and the
  members.

With no agent, the router costs a dictionary lookup per request: the services list, the
hottest route, is the local instance's own answer.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar, cast

import attrs
import trio

from dployr.cluster import placement
from dployr.cluster.uploads import Uploads
from dployr.metrics import InstanceSample, ServiceSample
from dployr.models import DeploymentStatus
from dployr.protocol import codec
from dployr.protocol import messages as m
from dployr.protocol.errors import Error
from dployr.protocol.events import Change, DeploymentChanged, SupervisionReport
from dployr.protocol.feed import Gap
from dployr.protocol.handle import Feed, InstanceHandle, LogEntry
from dployr.store import codes as store_codes
from dployr.store.cluster import PLACEMENT, ClusterState, InstanceRecord
from dployr.supervision import topic as topics
from dployr.supervision.feed import TopicFeed

log = logging.getLogger("dployr.cluster")

R = TypeVar("R")
T = TypeVar("T")

_EPOCH = 1 << 40
"""The router's :attr:`~ClusterHandle.generation` is its epoch (members joined or left)
times this, plus the sum of its members' generations."""


class Members(Protocol):
    """The instances a router reaches besides the local one (the hub's connected agents)."""

    def member(self, name: str, /) -> InstanceHandle | None:
        """The connected member ``name``; None when it is not connected (away)."""
        ...

    def connected(self) -> Mapping[str, InstanceHandle]:
        """Every connected member, by name."""
        ...

    @property
    def changed(self) -> trio.Event:
        """Set at the next connect or disconnect (a new event after each)."""
        ...

    def disconnect(self, name: str, reason: str) -> None:
        """Close the member's channel now and forget it (it was removed)."""
        ...


class NoMembers:
    """A cluster of the local instance alone: no agent ever connects."""

    def __init__(self) -> None:
        self._never = trio.Event()

    def member(self, name: str, /) -> InstanceHandle | None:
        """None: nothing is connected."""
        return None

    def connected(self) -> Mapping[str, InstanceHandle]:
        """Nothing."""
        return {}

    @property
    def changed(self) -> trio.Event:
        """An event never set."""
        return self._never

    def disconnect(self, name: str, reason: str) -> None:
        """Nothing is connected: nothing to close."""


def last_seen_text(at: float | None) -> str:
    """ "last seen 2026-12-06 23:40:12 UTC", or "never seen"."""
    if at is None:
        return "never seen"
    return "last seen " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


class ClusterHandle:
    """Local instance + members as one InstanceHandle (see the module).

    Run :meth:`run` (a child of the daemon's root supervisor) before serving it: it loads
    the placement and the last-known services, merges the members' feeds, and follows the
    members as they connect and leave.
    """

    def __init__(
        self,
        local: InstanceHandle,
        members: Members,
        state: ClusterState,
        *,
        clock: Callable[[], float] = time.time,
        local_services: bool = True,
        uploads: Uploads | None = None,
    ) -> None:
        # The local instance builds the uploads its deploys name (dployr/cluster/uploads.py).
        self._local = local if uploads is None else uploads.building(local)
        self._uploads = uploads
        """The folders uploaded to the control plane (dployr/cluster/uploads.py)."""
        self._local_name = local.instance_name
        self._local_services = local_services
        """False: no new service is placed on the local instance (it keeps those it has)."""
        self._members = members
        self._state = state
        self._clock = clock
        # Invariants: _placement mirrors the state's placement (service -> instance) as
        # this router changed or learnt it; a service missing from it is the local
        # instance's. _snapshots holds each remote instance's last-known services, as the
        # state keeps them. _last_seen is when each known instance was last seen.
        self._placement: dict[str, str] = {}
        self._snapshots: dict[str, tuple[float, tuple[m.ServiceInfo, ...]]] = {}
        self._last_seen: dict[str, float | None] = {}
        self._epoch = 0
        self._served: dict[str, tuple[InstanceHandle, trio.CancelScope]] = {}
        self._moving: dict[str, trio.Event] = {}
        """The services whose move is under way, each with the event set when it ends."""
        self._nursery: trio.Nursery | None = None
        self._changes: topics.Topic[Change | Gap] = topics.Topic("cluster changes")
        self._supervision: topics.Topic[SupervisionReport | Gap] = topics.Topic(
            "cluster supervision"
        )
        self._metrics: topics.Topic[ServiceSample | Gap] = topics.Topic("cluster metrics")
        self._routes: dict[type[Any], Callable[[Any], Any]] = {
            m.Deploy: self._deploy,
            m.ListServices: self._list_services,
            m.ListInstances: self._list_instances,
            m.AddInstance: self._add_instance,
            m.RemoveInstance: self._remove_instance,
        }

    # -- running --------------------------------------------------------------------------

    async def run(
        self, ctx: object = None, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Load what the state knows, merge the members' feeds, follow the members."""
        self._placement = dict(await self._state.placement())
        await self._load_snapshots(None)
        await self._refresh_records()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._pump_feeds(nursery, self._local)
            await nursery.start(self._follow_placement)
            task_status.started()
            try:
                while True:
                    changed = self._members.changed  # taken first: no change is missed
                    await self._follow_members(nursery)
                    await changed.wait()
            finally:
                self._nursery = None
                for _, scope in self._served.values():
                    scope.cancel()
                self._served.clear()

    async def _follow_placement(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Read the placement again whenever it changed in the state: another control
        plane on the same database placed or moved a service."""
        async with self._state.notifications() as changes:
            task_status.started()
            async for parts in changes:
                if PLACEMENT in parts:
                    self._placement = dict(await self._state.placement())

    async def _follow_members(self, nursery: trio.Nursery) -> None:
        """Start serving the members that connected, stop those that left."""
        connected = dict(self._members.connected())
        left = [n for n, (h, _) in self._served.items() if connected.get(n) is not h]
        for name in left:
            self._served.pop(name)[1].cancel()
            self._seen(name, self._clock())
        joined = [n for n in connected if n not in self._served]
        for name in joined:
            scope = trio.CancelScope()
            self._served[name] = (connected[name], scope)
            nursery.start_soon(self._serve_member, name, connected[name], scope)
        if left or joined:
            self._epoch += 1
            await self._refresh_records()
        if left:
            await self._load_snapshots(left)

    async def _serve_member(
        self, name: str, handle: InstanceHandle, scope: trio.CancelScope
    ) -> None:
        """Merge one member's feeds; keep its last-known services, its services placed."""
        dirty_in, dirty_out = trio.open_memory_channel[None](1)
        with scope:
            async with trio.open_nursery() as nursery:
                self._pump_feeds(nursery, handle, on_change=dirty_in)
                dirty_in.send_nowait(None)  # what it runs now, at once
                async for _ in dirty_out:
                    try:
                        rows = await handle.request(m.ListServices())
                    except Error as error:
                        log.warning("instance %s did not list its services: %s", name, error)
                        continue
                    await self._learn(name, rows)

    async def _learn(self, name: str, rows: tuple[m.ServiceInfo, ...]) -> None:
        """Place the services of member ``name`` that have no instance yet; keep its rows
        (the hub records them in the state as the agent sends them)."""
        for info in rows:
            if info.name not in self._placement and not self._is_local(info.name):
                await self._place(info.name, name)
        self._snapshots[name] = (self._clock(), rows)

    def _is_local(self, service: str) -> bool:
        """Whether the local instance has ``service`` (an unplaced service is its own)."""
        try:
            self._local.check_service(service)
        except Error:
            return False
        return True

    async def _load_snapshots(self, names: Sequence[str] | None) -> None:
        """Take the state's last-known services of ``names`` (None: all) where they are
        newer than the router's own."""
        for name, (at, rows) in (await self._state.snapshots()).items():
            if names is not None and name not in names:
                continue
            if name not in self._snapshots or self._snapshots[name][0] < at:
                decoded = tuple(codec.decode_as(row, m.ServiceInfo) for row in rows)
                self._snapshots[name] = (at, decoded)

    def _pump_feeds(
        self,
        nursery: trio.Nursery,
        handle: InstanceHandle,
        on_change: trio.MemorySendChannel[None] | None = None,
    ) -> None:
        nursery.start_soon(_pump, handle.subscribe_changes(), self._changes, on_change)
        nursery.start_soon(_pump, handle.subscribe_supervision(), self._supervision, None)
        nursery.start_soon(_pump, handle.subscribe_metrics(), self._metrics, None)

    async def _refresh_records(self) -> None:
        for record in await self._state.instances():
            self._seen(record.name, record.last_seen)

    def _seen(self, instance: str, at: float | None) -> float | None:
        """Note that ``instance`` was seen ``at`` (the later of what is known wins)."""
        known = self._last_seen.get(instance)
        if known is None or (at is not None and at > known):
            self._last_seen[instance] = known = at
        return known

    # -- the InstanceHandle ---------------------------------------------------------------

    @property
    def instance_name(self) -> str:
        """The local instance's name (the control plane's own)."""
        return self._local_name

    @property
    def generation(self) -> int:
        """Grows whenever a member's services change, or a member joins or leaves."""
        total = self._epoch * _EPOCH + self._local.generation
        for _, (handle, _) in self._served.items():
            total += handle.generation
        return total

    async def request(self, request: m.Request[R], /) -> R:
        """Carry out a request on the member it concerns (see the module)."""
        route = self._routes.get(type(request))
        if route is not None:
            with store_codes.protocol_errors():  # the cluster state's errors: its table
                return cast(R, await route(request))
        name = getattr(request, "name", None)
        if not isinstance(name, str):  # the local instance's own: GetInstance, RotateKey
            return await self._local.request(request)
        reply = await self._owner(name).request(request)
        if isinstance(request, m.Delete) and name in self._placement:
            await self._unplace(name)
        return reply

    def check_service(self, name: str, /) -> None:
        """Raise an Error unless ``name`` is a service of a connected member."""
        self._owner(name).check_service(name)

    def follow_logs(
        self,
        name: str,
        *,
        after: int | None = None,
        tail: int | None = None,
        streams: frozenset[str] | None = None,
    ) -> AsyncGenerator[LogEntry, None]:
        """A service's log, from the member that runs it."""
        owner = self._owner(name)
        return owner.follow_logs(name, after=after, tail=tail, streams=streams)

    def subscribe_changes(self) -> Feed[Change]:
        """Every member's changes."""
        return MergedFeed(self._changes.subscribe())

    def subscribe_supervision(self) -> Feed[SupervisionReport]:
        """Every member's supervision reports."""
        return MergedFeed(self._supervision.subscribe())

    def subscribe_metrics(self) -> Feed[ServiceSample]:
        """Every member's service samples."""
        return MergedFeed(self._metrics.subscribe())

    def latest_samples(self) -> list[ServiceSample]:
        """The last sample of every running service of every connected member."""
        samples = self._local.latest_samples()
        for handle, _ in self._served.values():
            samples = samples + handle.latest_samples()
        return samples

    def latest_machine(self) -> InstanceSample | None:
        """The last sample of the local machine."""
        return self._local.latest_machine()

    # -- routing --------------------------------------------------------------------------

    def _owner(self, service: str) -> InstanceHandle:
        """The handle of the member ``service`` belongs to; ``unavailable`` if it is away."""
        where = self._placement.get(service)
        if where is None or where == self._local_name:
            return self._local
        handle = self._members.member(where)
        if handle is None:
            raise self._away(where)
        return handle

    def _away(self, instance: str) -> Error:
        seen = last_seen_text(self._last_seen.get(instance))
        return Error("unavailable", f"instance {instance} is away ({seen})")

    async def _instance(self, name: str) -> InstanceHandle:
        """The handle of instance ``name``: ``not_found`` if there is none, ``unavailable``
        if it is away."""
        if name == self._local_name:
            return self._local
        handle = self._members.member(name)
        if handle is not None:
            return handle
        records = {r.name: r for r in await self._state.instances()}
        if name not in records:
            raise Error("not_found", f"no instance {name!r}")
        if records[name].joined_at is None:
            raise Error(
                "unavailable",
                f"instance {name} has not joined yet: run `dployr agent --join URL --token "
                "TOKEN` on its machine with the token `dployr instances add` printed",
            )
        self._seen(name, records[name].last_seen)
        raise self._away(name)

    async def _place(self, service: str, instance: str) -> None:
        if self._placement.get(service) != instance:
            await self._state.place(service, instance)
            self._placement[service] = instance

    async def _unplace(self, service: str) -> None:
        if self._placement.pop(service, None) is not None:
            await self._state.unplace(service)

    async def _deploy(self, request: m.Deploy) -> object:
        name = request.name
        plain = attrs.evolve(request, instance=None)
        current = self._placement.get(name)
        if current is None and (self._local_services or self._is_local(name)):
            current = self._local_name  # an unplaced service is the local instance's
        # else: new, and the local instance takes none
        wanted = request.instance or current or self._least_loaded()
        if not self._local_services and wanted == self._local_name and current != wanted:
            raise Error(
                "invalid",
                f"instance {wanted} takes no new services (dployr up --no-local-services): "
                "name another with --instance",
            )
        target = await self._instance(wanted)
        if self._uploads is not None:  # an uploaded folder reaches the instance first
            plain = await self._uploads.deliver(plain, target)
        if current is None:
            deployment = await target.request(plain)
            await self._place(name, wanted)
            return deployment
        if wanted == current:
            deployment = await target.request(plain)
            if current != self._local_name or name in self._placement:
                await self._place(name, current)
            return deployment
        old = self._owner(name)
        try:
            old.check_service(name)
        except Error as error:
            if error.code != "not_found":
                raise
            # New to the cluster (or placed where it no longer is): no move, a deploy.
            deployment = await target.request(plain)
            await self._place(name, wanted)
            return deployment
        plain = await _carried(old, plain)
        feed = target.subscribe_changes()  # before the deploy: its end cannot be missed
        try:
            deployment = await target.request(plain)
            await self._place(name, wanted)
        except BaseException:
            feed.close()
            raise
        nursery = self._nursery
        if nursery is None:
            feed.close()
            raise Error("unavailable", "the cluster is not running: the old instance stays")
        move = _Move(name, current, target, feed, deployment.id, trio.Event())
        self._moving[name] = move.done
        nursery.start_soon(self._finish_move, move)
        return deployment

    def _least_loaded(self) -> str:
        """The least loaded connected instance (:mod:`~dployr.cluster.placement`), or an
        ``unavailable`` Error when none is connected."""
        placed = collections.Counter(self._placement.values())
        loads = []
        for name, handle in self._members.connected().items():
            machine = handle.latest_machine()
            loads.append(
                placement.Load(
                    name,
                    placed[name],
                    None
                    if machine is None
                    else placement.memory_share(
                        machine.memory_used_bytes, machine.memory_total_bytes
                    ),
                    None if machine is None else machine.cpu_percent,
                )
            )
        chosen = placement.least_loaded(loads)
        if chosen is None:
            raise Error(
                "unavailable",
                f"no instance to run it: {self._local_name} takes no new services (dployr up "
                "--no-local-services) and no other instance is connected",
            )
        return chosen

    async def moved(self, name: str) -> None:
        """Wait until the move of service ``name`` under way, if any, has ended (its copy on
        the old instance deleted, or kept because the new deployment failed)."""
        done = self._moving.get(name)
        if done is not None:
            await done.wait()

    async def _finish_move(self, move: _Move) -> None:
        try:
            await self._delete_moved(move, await _outcome(move))
        finally:
            if self._moving.get(move.service) is move.done:
                del self._moving[move.service]
            move.done.set()

    async def _delete_moved(self, move: _Move, succeeded: bool | None) -> None:
        """Once the moved service's new deployment succeeded, delete it on its old instance."""
        name, old, deployment = move.service, move.old, move.deployment
        if succeeded is None:
            log.warning("moving %s: its new instance left before the deploy ended", name)
            return
        if not succeeded:
            log.warning(
                "moving %s: deployment %d failed; it still runs on %s", name, deployment, old
            )
            return
        handle = self._local if old == self._local_name else self._members.member(old)
        if handle is None:
            log.warning("moved %s, but %s is away: it still runs there", name, old)
            return
        try:
            await handle.request(m.Delete(name))
        except Error as error:
            log.warning("moved %s, but deleting it on %s failed: %s", name, old, error)

    # -- the cluster's own requests -------------------------------------------------------

    async def _list_services(self, request: m.ListServices) -> tuple[m.ServiceInfo, ...]:
        served, snapshots = self._served, self._snapshots
        if not served and not snapshots:  # one machine: its own answer, nothing added
            return await self._local.request(request)
        local: tuple[m.ServiceInfo, ...] = await self._local.request(request)
        rows = list(local)
        members = [(name, handle) for name, (handle, _) in served.items()]
        asked: list[tuple[m.ServiceInfo, ...] | Error] = await _ask_each(members, request)
        for (name, _), listed in zip(members, asked, strict=True):
            if isinstance(listed, Error):
                log.warning("instance %s did not list its services: %s", name, listed)
                rows.extend(_stale(snapshots.get(name, (0.0, ()))[1]))
            else:
                rows.extend(listed)
        for name, (_, known) in snapshots.items():
            if name not in served:
                rows.extend(_stale(known))
        rows.sort(key=_by_name)
        return tuple(rows)

    async def _list_instances(self, _: m.ListInstances) -> tuple[m.InstanceView, ...]:
        local = await self._local.request(m.GetInstance())
        view = m.InstanceView.of(local, last_seen=self._clock())
        views = [attrs.evolve(view, takes_services=self._local_services)]
        records = [
            r
            for r in sorted(await self._state.instances(), key=lambda r: r.name)
            if r.name != self._local_name
        ]
        members = [(r.name, h) for r in records if (h := self._members.member(r.name)) is not None]
        asked: list[m.InstanceInfo | Error] = await _ask_each(members, m.GetInstance())
        answers = {name: answer for (name, _), answer in zip(members, asked, strict=True)}
        views += [self._instance_view(r, answers.get(r.name)) for r in records]
        return tuple(views)

    def _instance_view(
        self, record: InstanceRecord, answer: m.InstanceInfo | Error | None
    ) -> m.InstanceView:
        """An instance as its answer to GetInstance shows it (None: not connected)."""
        if isinstance(answer, Error):
            log.warning("instance %s did not answer: %s", record.name, answer)
        elif answer is not None:
            view = m.InstanceView.of(answer, address=record.address, last_seen=self._clock())
            return attrs.evolve(view, name=record.name)
        machine = record.machine or {}
        return m.InstanceView(
            name=record.name,
            state="pending" if record.joined_at is None else "away",
            address=record.address,
            version=record.version,
            last_seen=self._seen(record.name, record.last_seen),
            hostname=_text(machine.get("hostname")),
            cpu_percent=_number(machine.get("cpu_percent")),
            memory_used_bytes=_count(machine.get("memory_used_bytes")),
            memory_total_bytes=_count(machine.get("memory_total_bytes")),
            disk_free_bytes=_count(machine.get("disk_free_bytes")),
            disk_full=machine.get("disk_full") is True,
            services=_stale(self._snapshots.get(record.name, (0.0, ()))[1]),
        )

    async def _add_instance(self, request: m.AddInstance) -> m.JoinTokenView:
        if request.name == self._local_name:
            raise Error("conflict", f"an instance named {request.name!r} exists: this one")
        token = await self._state.add_instance(request.name)
        self._last_seen[request.name] = None
        return m.JoinTokenView(token.instance, token.token, token.expires_at)

    async def _remove_instance(self, request: m.RemoveInstance) -> m.Deleted:
        name = request.name
        if name == self._local_name:
            raise Error("invalid", f"{name} is this control plane's own instance: it stays")
        await self._state.remove_instance(name)
        self._members.disconnect(name, "the instance was removed")
        for service in [s for s, where in self._placement.items() if where == name]:
            await self._unplace(service)
        self._snapshots.pop(name, None)
        self._last_seen.pop(name, None)
        self._epoch += 1
        return m.Deleted(name)


@attrs.frozen
class _Move:
    """A service's move under way: its new deployment on ``target``, watched on ``feed``."""

    service: str
    old: str
    target: InstanceHandle
    feed: Feed[Change]
    deployment: int
    done: trio.Event


async def _outcome(move: _Move) -> bool | None:
    """Whether the moved service's new deployment succeeded; None if its instance left."""
    name, deployment = move.service, move.deployment
    with move.feed, contextlib.suppress(Error):
        async with _entries(move.feed) as entries:
            async for entry in entries:
                if isinstance(entry, Gap):  # its end may be in what was missed
                    listed = await move.target.request(m.ListDeployments(name, 1000))
                    ends = [d.status for d in listed if d.id == deployment and d.status.finished]
                else:
                    ends = [
                        c.status
                        for c in entry
                        if isinstance(c, DeploymentChanged)
                        and c.service == name
                        and c.deployment == deployment
                        and c.status.finished
                    ]
                if ends:
                    return ends[-1] is DeploymentStatus.SUCCEEDED
    return None


class MergedFeed(TopicFeed[T | Gap, T]):
    """A subscription to one of the router's merged topics, as a Feed: runs of items, and
    the :class:`Gap` notices of the members' feeds and of this one."""

    def runs(self, batch: list[T | Gap]) -> Iterator[list[T] | Gap]:
        run: list[T] = []
        for item in batch:
            if isinstance(item, Gap):
                if run:
                    yield run
                    run = []
                yield item
            else:
                run.append(item)
        if run:
            yield run


async def _pump(
    feed: Feed[T], topic: topics.Topic[T | Gap], on_change: trio.MemorySendChannel[None] | None
) -> None:
    """Publish what a member's feed gives on the router's topic, until the feed ends."""
    with feed:
        async with _entries(feed) as entries:
            async for entry in entries:
                topic.publish_many([entry] if isinstance(entry, Gap) else entry)
                if on_change is not None:
                    with contextlib.suppress(trio.WouldBlock):
                        on_change.send_nowait(None)


@contextlib.asynccontextmanager
async def _entries(feed: Feed[T]) -> AsyncIterator[AsyncIterator[Sequence[T] | Gap]]:
    """Iterate a feed; its iterator is closed at the end (an async generator left open
    would be finalised later, out of order)."""
    entries = aiter(feed)
    try:
        yield entries
    finally:
        aclose = getattr(entries, "aclose", None)
        if aclose is not None:
            await aclose()


async def _carried(old: InstanceHandle, request: m.Deploy) -> m.Deploy:
    """A moving service's deploy, completed with what it has on its old instance: its
    settings (unless given) and its variables. A secret cannot be read back: it must be
    given again."""
    if request.settings is None:
        view = await old.request(m.GetSettings(request.name))
        request = attrs.evolve(request, settings=view.settings)
    listing = await old.request(m.ListEnv(request.name))
    secrets = sorted(v.key for v in listing.vars if v.secret and v.key not in request.secrets)
    if secrets:
        raise Error(
            "invalid",
            f"{request.name} has secrets ({', '.join(secrets)}) that cannot be read back: "
            "give them again (--secret KEY=VALUE) to move it",
        )
    env = {v.key: v.value for v in listing.vars if not v.secret}
    return attrs.evolve(request, env={**env, **request.env})


async def _ask_each(
    members: Sequence[tuple[str, InstanceHandle]], request: m.Request[R]
) -> list[R | Error]:
    """Each member's answer to ``request`` (or its Error), in order, asked all at once: a
    list over 20 agents takes the slowest one's round trip, not the sum of them all."""
    answers: list[R | Error] = [Error("unavailable", "not asked")] * len(members)

    async def ask(index: int, handle: InstanceHandle) -> None:
        try:
            reply: R = await handle.request(request)
        except Error as error:
            answers[index] = error
        else:
            answers[index] = reply

    async with trio.open_nursery() as nursery:
        for index, (_, handle) in enumerate(members):
            nursery.start_soon(ask, index, handle)
    return answers


def _stale(rows: tuple[m.ServiceInfo, ...]) -> tuple[m.ServiceInfo, ...]:
    return tuple(attrs.evolve(row, stale=True) for row in rows)


def _by_name(row: m.ServiceInfo) -> tuple[str, str]:
    return row.name, row.instance


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value
