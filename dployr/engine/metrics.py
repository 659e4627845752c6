"""The metrics sampler: CPU, memory, processes, threads and open files of every service.

Every ``interval`` seconds the sampler asks ``groups()`` which process groups each service
has (one per live release: two during a deploy's swap), reads every member of those groups
in a worker thread, publishes the round on its topic (one :class:`InstanceSample`, then one
:class:`ServiceSample` per service) and records it in the store's history.

Why process groups: each release is started as the leader of its own process group, and
its children and grandchildren stay in it even when their parent exits and they are
reparented to init, so the group is the service's whole process tree, which walking the
parent links would lose. The kernel has no call listing a group's members, so each round
scans ``/proc`` once for all services (one ``getpgid`` per process on the machine) and maps
groups to their members.

Why ``/proc/<pid>/stat`` rather than ``psutil.Process``: one read of that file gives all
a member's figures but its open files (CPU times, threads, resident pages, start time,
state), where psutil reads three files plus one more for its identity check, and it costs a
third of the time; psutil still gives the machine's totals. Each member is known by
(pid, start time), so a reused pid is a new process. CPU percent needs two readings: a
member seen in the previous round counts the CPU time it used since then, one born after
the previous round counts all of its CPU time (so short-lived workers are not missed), and
one that was there already but unseen (the first round of all) only sets the baseline.
Members that are gone are forgotten at the end of each round, so the cache holds exactly
the live members. CPU time of a process that was born *and* died between two rounds is not
seen (its parent's "children" times would count it, but also count members already seen).

Why one module of ~480 lines: the sampling round, the /proc scan and the CPU accounting
share the per-process state kept between rounds (the rules themselves are dployr.metrics).
"""

from __future__ import annotations

import math
import os
import resource
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final, Protocol

import attrs
import psutil
import trio

from dployr.errors import SpecError
from dployr.metrics import (
    InstanceSample,
    Sample,
    ServiceSample,
    cpu_percent,
    cpu_seconds_in_round,
    next_round,
)
from dployr.store.store import Store
from dployr.supervision import ChildContext, ChildSpec, Restart, Supervisor, Topic

_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")
MAX_FILES: Final = 4096
"""The most /proc files a probe keeps open, whatever the daemon's file limit."""
_GONE = (FileNotFoundError, ProcessLookupError, PermissionError)
"""What reading /proc/<pid>/... raises for a process that exited (or is hidden from us)."""


def _boottime() -> float:
    """Seconds since boot, suspend included: the clock of a process's start time in /proc."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def group_members(pgids: Iterable[int]) -> dict[int, list[int]]:
    """The pids in each of the process groups ``pgids`` that has any, in one /proc scan."""
    wanted = set(pgids)
    members: dict[int, list[int]] = {}
    if not wanted:
        return members
    getpgid = os.getpgid
    for entry in os.scandir("/proc"):
        name = entry.name
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            pgid = getpgid(pid)
        except OSError:  # exited meanwhile
            continue
        if pgid in wanted:
            members.setdefault(pgid, []).append(pid)
    return members


@attrs.frozen
class _Reading:
    """One member's figures, read from /proc."""

    pgid: int
    started: int
    """Clock ticks after boot: with the pid, the process's identity."""
    cpu_seconds: float
    """User and system CPU time used so far."""
    at: float
    """When ``cpu_seconds`` was read (seconds since boot)."""
    rss_bytes: int
    threads: int
    open_fds: int


def _open_stat(pid: int) -> int:
    """``/proc/<pid>/stat`` opened: reads through it stay bound to this very process."""
    return os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)


def _parse(pid: int, data: bytes, at: float) -> _Reading | None:
    """A member's reading from its ``stat`` file, or None if it is a zombie."""
    # The name (field 2) is in parentheses and may hold anything, ")" included: the fields
    # after the last ")" start at field 3, so field N of proc(5) is fields[N - 3].
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):  # exited, not yet (or just) reaped
        return None
    try:
        open_fds = _count_fds(pid)
    except PermissionError:  # a member running as another user (a setuid helper)
        open_fds = 0
    except (FileNotFoundError, ProcessLookupError):
        return None
    return _Reading(
        pgid=int(fields[2]),
        started=int(fields[19]),
        cpu_seconds=(int(fields[11]) + int(fields[12])) / _CLOCK_TICKS,
        at=at,
        rss_bytes=int(fields[21]) * _PAGE_SIZE,
        threads=int(fields[17]),
        open_fds=open_fds,
    )


def _count_fds(pid: int) -> int:
    """How many files ``pid`` has open.

    Linux 6.2 and later give the count as the size of ``/proc/<pid>/fd`` (one ``stat``);
    older kernels say 0 there, and the folder is listed instead.
    """
    path = f"/proc/{pid}/fd"
    return os.stat(path).st_size or len(os.listdir(path))


def default_max_files() -> int:
    """How many /proc files a probe may keep open: a quarter of the daemon's file limit,
    at most :data:`MAX_FILES` (the rest is for services' pipes, sockets and clients)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_FILES
    return max(0, min(MAX_FILES, soft // 4))


@attrs.frozen
class _Seen:
    """What the previous round learnt of a member, for the next round's CPU percent."""

    started: int
    cpu_seconds: float
    at: float


@attrs.frozen
class Round:
    """One round of samples, all taken at ``instance.ts``."""

    instance: InstanceSample
    services: tuple[ServiceSample, ...]

    @property
    def samples(self) -> list[Sample]:
        """The round as published and recorded: the instance first, then each service."""
        return [self.instance, *self.services]


class Probe(Protocol):
    """Where samples come from: the OS (:class:`ProcessProbe`), or a fake in tests."""

    async def sample(self, groups: Mapping[str, Sequence[int]]) -> Round:
        """One round: a sample of each service of ``groups`` and of the instance."""
        ...

    def close(self) -> None:
        """Let go of what the rounds held (open files): the sampler has stopped."""
        ...


class ProcessProbe:
    """Reads services' process groups from /proc and the machine's totals from psutil.

    :meth:`read` blocks (for a few milliseconds) and :meth:`sample` runs it in a worker
    thread. One round at a time: the sampler never overlaps them.

    Each member's ``stat`` file stays open from the round that first reads it until the
    member is gone (at most ``max_files`` at once; members beyond that are read by path).
    Reading an open file of /proc costs half of opening it again, and the open file stays
    bound to its process: once that process is gone it reads as gone, even if its pid
    was given to a new one. :meth:`close` closes them all.
    """

    def __init__(
        self, clock: Callable[[], float] = time.time, *, max_files: int | None = None
    ) -> None:
        self._clock = clock
        # Invariant: after a round, _seen holds exactly the members read in that round,
        # _files the open stat files of some of them (at most _max_files), and
        # _previous_round is the boot-clock time that round started at.
        self._seen: dict[int, _Seen] = {}
        self._files: dict[int, int] = {}
        self._max_files = default_max_files() if max_files is None else max_files
        self._previous_round: float | None = None
        self._previous_cpu: tuple[float, float] | None = None  # machine (busy, total) seconds
        self._cpu_count = psutil.cpu_count() or 1

    @property
    def tracked(self) -> int:
        """How many processes the probe remembers: the live members of the last round."""
        return len(self._seen)

    @property
    def open_files(self) -> int:
        """How many /proc files the probe holds open: at most one per tracked member."""
        return len(self._files)

    async def sample(self, groups: Mapping[str, Sequence[int]]) -> Round:
        """One round, read off the event loop."""
        return await trio.to_thread.run_sync(self.read, groups)

    def read(self, groups: Mapping[str, Sequence[int]]) -> Round:
        """One round, read in the calling thread."""
        ts = self._clock()
        start = _boottime()
        members = group_members(pgid for pgids in groups.values() for pgid in pgids)
        seen: dict[int, _Seen] = {}
        old_files, self._files = self._files, {}
        services = []
        try:
            for service, pgids in groups.items():
                cpu = 0.0
                rss = processes = threads = open_fds = 0
                for pgid in dict.fromkeys(pgids):  # a pid is in one group only
                    for pid in members.get(pgid, ()):
                        data = self._stat_of(pid, old_files)
                        reading = None if data is None else _parse(pid, data, _boottime())
                        if reading is None or reading.pgid != pgid:
                            # exited, or moved to another group, since the scan
                            if pid in self._files:
                                os.close(self._files.pop(pid))
                            continue
                        cpu += self._cpu_percent(pid, reading)
                        seen[pid] = _Seen(reading.started, reading.cpu_seconds, reading.at)
                        rss += reading.rss_bytes
                        processes += 1
                        threads += reading.threads
                        open_fds += reading.open_fds
                services.append(
                    ServiceSample(service, ts, round(cpu, 2), rss, processes, threads, open_fds)
                )
        finally:
            for fd in old_files.values():  # members gone, or in no group sampled now
                os.close(fd)
        self._seen = seen
        self._previous_round = start
        return Round(self._read_instance(ts), tuple(services))

    def close(self) -> None:
        """Close the files held open and forget every member: the next round is a baseline."""
        files, self._files = self._files, {}
        for fd in files.values():
            os.close(fd)
        self._seen = {}
        self._previous_round = None

    def _stat_of(self, pid: int, old_files: dict[int, int]) -> bytes | None:
        """What ``/proc/<pid>/stat`` says now, or None if the process is gone.

        Read through the file kept open for the process since an earlier round, else
        through one opened now and kept (while fewer than ``max_files`` are), else by path.
        """
        fd = old_files.pop(pid, None)
        if fd is None:  # read already in this round (a group named by two services)
            fd = self._files.pop(pid, None)
        if fd is not None:
            try:
                data = os.pread(fd, 4096, 0)
            except _GONE:  # the process it was opened for is gone: the pid is a new one's
                os.close(fd)
            else:
                self._files[pid] = fd
                return data
        try:
            fd = _open_stat(pid)
        except _GONE:
            return None
        if len(self._files) + len(old_files) >= self._max_files:
            try:
                return os.read(fd, 4096)
            except _GONE:
                return None
            finally:
                os.close(fd)
        self._files[pid] = fd
        try:
            return os.pread(fd, 4096, 0)
        except _GONE:
            os.close(self._files.pop(pid))
            return None

    def _cpu_percent(self, pid: int, reading: _Reading) -> float:
        """The member's CPU percent since the previous round (0 when unknown)."""
        before = self._seen.get(pid)
        if before is not None and before.started != reading.started:
            before = None  # the pid was reused
        previous_round = self._previous_round
        # Start times are whole clock ticks: a process started in the tick the previous
        # round started in, but not seen by it, was started after its scan.
        born = previous_round is not None and (
            reading.started >= math.floor(previous_round * _CLOCK_TICKS)
        )
        used = cpu_seconds_in_round(
            None if before is None else before.cpu_seconds,
            reading.cpu_seconds,
            born_in_round=born,
        )
        if used is None:
            return 0.0
        since = before.at if before is not None else previous_round
        assert since is not None  # a member not seen before counts only if born since
        return cpu_percent(used, reading.at - since)

    def _read_instance(self, ts: float) -> InstanceSample:
        times = psutil.cpu_times()
        # Guest time is already counted in user time (as psutil's own cpu_percent does).
        total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
        busy = total - times.idle - getattr(times, "iowait", 0.0)
        percent = 0.0
        if self._previous_cpu is not None:
            busy_before, total_before = self._previous_cpu
            if total > total_before:
                share = (busy - busy_before) / (total - total_before)
                percent = min(100.0, max(0.0, 100.0 * share))
        self._previous_cpu = (busy, total)
        memory = psutil.virtual_memory()
        load1, load5, load15 = os.getloadavg()
        return InstanceSample(
            ts=ts,
            cpu_percent=round(percent, 2),
            memory_used_bytes=memory.total - memory.available,
            memory_total_bytes=memory.total,
            load=(load1, load5, load15),
            cpu_count=self._cpu_count,
        )


@attrs.frozen
class SamplerStatistics:
    """A snapshot of the sampler."""

    rounds: int
    """Rounds published so far (the baseline round is not one)."""
    services: int
    """Services in the last round."""
    last_round_seconds: float
    """Wall time the last round took, reading and recording."""


CHILD_ID: Final = "_metrics"
"""The sampler's child id: not a valid service name, so it never collides with a service."""
SHUTDOWN: Final = 5.0
"""Seconds the sampler is given to stop: it finishes the round it is reading (milliseconds)."""

GroupsFunction = Callable[[], Mapping[str, Sequence[int]]]
"""``groups()``: each service's live process groups (the pgids of its releases)."""


class MetricsSampler:
    """Samples every service's process tree each ``interval`` s: publishes and records it.

    ``groups()`` is called on the trio thread at each round and says which services to
    sample: service name -> the pgids of its live releases (usually one; two while a deploy
    swaps releases). A service named with no live group gets a sample of zeros; a service
    not named gets none, and its :meth:`latest` is forgotten. ``store`` (optional) records
    each round in one transaction (:meth:`Store.record_samples`).

    Run it as a supervisor child (see :meth:`child_spec`): it takes a baseline round,
    which is neither published nor recorded (CPU percent needs two readings), then
    publishes a round every ``interval`` seconds on :attr:`samples`. A supervisor that
    restarts it runs the same object again: subscribers and the latest samples carry over
    (the probe lets go of its open files whenever the sampler stops).
    """

    def __init__(
        self,
        groups: GroupsFunction,
        store: Store | None = None,
        *,
        interval: float,
        probe: Probe | None = None,
        topic: Topic[Sample] | None = None,
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int | float):
            raise SpecError(f"the metrics interval must be a number of seconds, not {interval!r}")
        if not (math.isfinite(interval) and interval > 0):
            raise SpecError(f"the metrics interval must be more than 0 s, not {interval!r}")
        self.interval = float(interval)
        self._groups = groups
        self._store = store
        self._probe: Probe = ProcessProbe() if probe is None else probe
        self.samples: Topic[Sample] = Topic("metrics") if topic is None else topic
        """Each round as one batch: the InstanceSample, then a ServiceSample per service."""
        # Invariant: _latest holds the last round's sample of each service in that round.
        self._latest: dict[str, ServiceSample] = {}
        self._latest_instance: InstanceSample | None = None
        self._rounds = 0
        self._last_round_seconds = 0.0

    def latest(self, service: str) -> ServiceSample | None:
        """The service's sample of the last round, or None if it was not sampled."""
        return self._latest.get(service)

    def latest_services(self) -> list[ServiceSample]:
        """Every service's sample of the last round, by service name."""
        return sorted(self._latest.values(), key=lambda sample: sample.service)

    def latest_instance(self) -> InstanceSample | None:
        """The instance's sample of the last round, or None before the first round."""
        return self._latest_instance

    def statistics(self) -> SamplerStatistics:
        """A frozen snapshot: rounds, services, and what the last round cost."""
        return SamplerStatistics(
            rounds=self._rounds,
            services=len(self._latest),
            last_round_seconds=self._last_round_seconds,
        )

    def child_spec(self, child_id: str = CHILD_ID) -> ChildSpec:
        """The sampler as a child of the instance supervisor, isolated from the services.

        It runs under a supervisor of its own (default intensity and backoff), which is a
        ``temporary`` child: a sampler that keeps crashing (say, the disk is full and its
        history cannot be written) is restarted a few times, then given up on and reported
        as a supervision event, while the services it watches keep running untouched.
        """
        supervisor = Supervisor(child_id, [ChildSpec("sampler", self.run, shutdown=SHUTDOWN)])
        return ChildSpec.supervisor(child_id, supervisor.run, restart=Restart.TEMPORARY)

    async def run(
        self,
        ctx: ChildContext | None = None,
        *,
        task_status: trio.TaskStatus[MetricsSampler] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Report ready, take the baseline, then sample every ``interval`` s until cancelled.

        Ready comes first so that a sampler that cannot read the OS fails as a running
        child (restarted, then given up on), never as one that failed to start.
        """
        task_status.started(self)
        try:
            due = trio.current_time()
            await self._probe.sample(self._groups())  # the baseline: CPU needs two readings
            while True:
                due = next_round(due, trio.current_time(), self.interval)
                await trio.sleep_until(due)
                await self._sample_round()
        finally:
            self._probe.close()

    async def _sample_round(self) -> Round:
        """Take one round now: publish it, remember it, record it."""
        began = time.perf_counter()
        sampled = await self._probe.sample(self._groups())
        self._latest = {sample.service: sample for sample in sampled.services}
        self._latest_instance = sampled.instance
        self._rounds += 1
        batch = sampled.samples
        self.samples.publish_many(batch)
        if self._store is not None:
            self._store.record_samples(batch)
        self._last_round_seconds = time.perf_counter() - began
        return sampled
