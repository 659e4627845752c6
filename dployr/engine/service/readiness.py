"""When a new release may take connections: its readiness, raced against its crash.

Ready is: its health check passed; or, without one, its port accepts (if it has one) and
its process has then stayed up the minimum uptime. The wait for it and a watch for its
crash run side by side in a nursery, as trio's ``open_tcp_stream`` races its attempts:
the first to finish ends the other. A crash of the new release while it is waited for
fails it, with the last lines it wrote; the cause is kept.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from dployr.engine.errors import DeployFailed
from dployr.engine.os import launcher, ports
from dployr.engine.release import ReleaseSpec
from dployr.engine.service.core import LiveRelease
from dployr.engine.service.tree import ServiceTree
from dployr.models import Health, HealthKind, ServiceSettings

CRASH_LINES = 20
"""Lines of a new release's output kept in the record of a deploy it failed."""
LISTEN_POLL_FIRST = 0.005
LISTEN_POLL_STEADY = 2.0
LISTEN_POLL_MAX = 0.2
"""Nothing tells when a process starts to listen: its port is tried every
LISTEN_POLL_FIRST seconds for LISTEN_POLL_STEADY seconds (most releases listen within
that: a try costs ~20 µs on loopback plus the wake-up, a late one adds up to its
interval to every deploy), then on a backoff up to LISTEN_POLL_MAX (and again at every
change of the release). Two seconds, not less: a container's ``podman run`` listens
after 0.1-0.2 s on a quiet machine but 0.5-1 s on a loaded one, where a backoff begun
at half a second found it up to 200 ms late."""


class ReleaseCrashed(Exception):
    """The release waited for exited (or gave up) before it was ready."""


class ReleaseReadiness(ServiceTree):
    """Waiting for a new release to be ready."""

    async def _wait_ready(self, spec: ReleaseSpec, say: Callable[[str], None]) -> None:
        """Wait until a new release may take connections, or raise DeployFailed."""
        live = self.releases[spec.child_id]
        settings = live.deployment.settings
        has_check = self._check(spec, settings) is not None
        timeout = self.config.ready_timeout
        if not has_check:  # the minimum uptime is waited for on top
            timeout += settings.restart.min_uptime
        crashes = live.crashes
        crashed: ReleaseCrashed | None = None
        with trio.move_on_after(timeout):
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_watch_crash, live, crashes)
                    await self._until_ready(live, spec, has_check, say)
                    _check_alive(live, crashes)  # in the instant the wait ended
                    nursery.cancel_scope.cancel()  # ready: the watch is over
            except* ReleaseCrashed as group:
                crashed = _first(group)
            if crashed is None:
                return
        if crashed is not None:
            tail = await self._crash_output(spec.deployment)
            raise DeployFailed(
                f"the new release {live.last_crash or 'exited'} before it was ready",
                output_tail=tail,
            ) from crashed
        if has_check:
            last = live.health.message or "no answer yet"
            raise DeployFailed(
                f"the new release did not pass its health check within {timeout:g} s ({last})"
            )
        if spec.listen_fd is not None:
            raise DeployFailed(
                "the new release did not wait for connections on the handed-over socket"
                f" within {timeout:g} s"
            )
        if spec.port is not None:
            raise DeployFailed(
                f"the new release did not accept connections on its port within {timeout:g} s"
            )
        raise DeployFailed(f"the new release did not start within {timeout:g} s")

    async def _until_ready(
        self, live: LiveRelease, spec: ReleaseSpec, has_check: bool, say: Callable[[str], None]
    ) -> None:
        """Return once the release is ready (its crash is watched for beside this)."""
        settings = live.deployment.settings
        if has_check:
            say(f"waiting for its health check ({_check_words(settings)})")
            while live.health.health is not Health.HEALTHY:
                await live.changed.wait()
            return
        if spec.listen_fd is not None or spec.port is not None:
            say("waiting for it to accept connections")
            await _wait_listening(live, spec)
        uptime = settings.restart.min_uptime
        if uptime > 0:
            say(f"waiting for it to stay up {uptime:g} s")
            while live.started_at is None:
                await live.changed.wait()
            await trio.sleep_until(live.started_at + uptime)

    async def _crash_output(self, deployment: int) -> tuple[str, ...]:
        """The last lines a deployment's processes wrote (stdout and stderr)."""
        book = self.book
        try:
            lines = await trio.to_thread.run_sync(
                lambda: book.tail(CRASH_LINES * 10, {"stdout", "stderr"})
            )
        except OSError:
            return ()
        return tuple(line.line for line in lines if line.deployment == deployment)[-CRASH_LINES:]


def _crashed(live: LiveRelease, crashes: int) -> bool:
    return live.crashes != crashes or live.gave_up


def _check_alive(live: LiveRelease, crashes: int) -> None:
    if _crashed(live, crashes):
        raise ReleaseCrashed(live.last_crash or "exited")


async def _watch_crash(live: LiveRelease, crashes: int) -> None:
    """Raise ReleaseCrashed once the release has exited on its own (or given up)."""
    while not _crashed(live, crashes):
        await live.changed.wait()
    _check_alive(live, crashes)


async def _wait_listening(live: LiveRelease, spec: ReleaseSpec) -> None:
    delay = LISTEN_POLL_FIRST
    steady_until = trio.current_time() + LISTEN_POLL_STEADY
    while True:
        if spec.listen_fd is not None:
            # A handed-over socket: ready once the release waits on it.
            members = launcher.group_members(live.pid) if live.pid is not None else []
            if ports.waits_for_connections(spec.listen_fd, members):
                return
        elif spec.port is not None and await ports.accepts(spec.port):
            return
        with trio.move_on_after(delay):
            await live.changed.wait()
        if trio.current_time() >= steady_until:
            delay = min(delay * 2, LISTEN_POLL_MAX)


def _first(group: BaseExceptionGroup[ReleaseCrashed]) -> ReleaseCrashed:
    for error in group.exceptions:
        if isinstance(error, ReleaseCrashed):
            return error
        if isinstance(error, BaseExceptionGroup):
            return _first(error)
    raise AssertionError("a group split on ReleaseCrashed holds one")


def _check_words(settings: ServiceSettings) -> str:
    kind = settings.health_kind
    if kind is HealthKind.HTTP:
        return f"GET {settings.health_check or '/'}"
    if kind is HealthKind.TCP:
        return "a TCP connection"
    return f"command {settings.health.command}"
