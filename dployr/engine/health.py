"""Watchdog: a health probe per release, HTTP, TCP or command, with thresholds.

Each release's supervisor has a ``health`` child beside its ``process`` when the service
has a health check. It probes at once and then, until the release first answers, on a
short backoff (so a new release is found ready quickly, even if its failures to answer
while it starts already made it ``degraded``), and from then on every ``interval``
seconds. Consecutive failures (outside the start period) make the release ``degraded``,
consecutive successes make it ``healthy`` again. The rule is the pure
function :func:`observe`; the probes and the timer are the actor.

With ``restart_after`` set, that many consecutive failures make the probe end with
:class:`HealthRestart`: the release supervisor (``one_for_all``) restarts the process and
its probe, which counts against the service's restart budget like a crash (so a release
that never gets healthy ends ``failed``, "gave up after 5 restarts in 60 s (last: 3 health
checks failed in a row: GET /health: 503)"). Each run of the probe is a fresh start for a
new process: its count of failures starts at zero and its start period starts over.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from dployr.engine.os import launcher
from dployr.engine.os.warden import Warden
from dployr.errors import DployrError
from dployr.models import Health, HealthKind, HealthOptions
from dployr.supervision import ChildContext

WARMUP_FIRST = 0.05
"""Seconds between the first probes of a release, doubling up to its interval."""
MAX_RESPONSE_LINE = 4096


class HealthRestart(DployrError):
    """The release failed its health check ``restart_after`` times in a row."""


@attrs.frozen
class HealthState:
    """A release's health and the run of results that led to it."""

    health: Health = Health.UNKNOWN
    failures: int = 0
    """Consecutive failures that counted."""
    successes: int = 0
    """Consecutive successes."""
    message: str = ""
    """The last probe's result, in words."""


@attrs.frozen
class Verdict:
    """What one probe result means: the new state, and whether to act."""

    state: HealthState
    changed: bool
    restart: bool


def observe(
    state: HealthState, ok: bool, message: str, options: HealthOptions, starting: bool
) -> Verdict:
    """Fold one probe result into the state. Pure.

    A success counts towards ``healthy`` (the first ever success decides at once, so an
    unknown release becomes healthy as soon as it answers); a failure inside the start
    period is reported but not counted; ``failures`` counted failures in a row make the
    release degraded.
    """
    if ok:
        successes = state.successes + 1
        health = state.health
        if health is Health.UNKNOWN or successes >= options.successes:
            health = Health.HEALTHY
        new = HealthState(health, 0, successes, message)
        return Verdict(new, new.health is not state.health, False)
    if starting:
        new = attrs.evolve(state, successes=0, message=message)
        return Verdict(new, False, False)
    failures = state.failures + 1
    health = Health.DEGRADED if failures >= options.failures else state.health
    restart = options.restart_after is not None and failures >= options.restart_after
    new = HealthState(health, failures, 0, message)
    return Verdict(new, new.health is not state.health, restart)


@attrs.frozen
class Check:
    """What to probe: the kind, and where."""

    kind: HealthKind
    port: int | None
    path: str
    command: str | None
    cwd: Path
    env: Any
    warden: Warden | None = attrs.field(default=None, eq=False)
    """Told of a command check's process group while it runs (it dies with the daemon)."""


async def probe(check: Check, timeout: float) -> tuple[bool, str]:  # noqa: ASYNC109
    """Run one probe with its timeout; return (ok, what happened in words)."""
    with trio.move_on_after(timeout):
        try:
            if check.kind is HealthKind.HTTP:
                return await _http(check)
            if check.kind is HealthKind.TCP:
                return await _tcp(check)
            return await _command(check)
        except OSError as error:
            return False, _what(check, error.strerror or str(error))
    return False, _what(check, f"no answer within {timeout:g} s")


def _what(check: Check, result: str) -> str:
    if check.kind is HealthKind.HTTP:
        return f"GET {check.path}: {result}"
    if check.kind is HealthKind.TCP:
        return f"connect to port {check.port}: {result}"
    return f"{check.command}: {result}"


async def _http(check: Check) -> tuple[bool, str]:
    assert check.port is not None
    stream = await trio.open_tcp_stream("127.0.0.1", check.port)
    async with stream:
        request = f"GET {check.path} HTTP/1.0\r\nHost: 127.0.0.1:{check.port}\r\n"
        await stream.send_all((request + "User-Agent: dployr-watchdog\r\n\r\n").encode())
        head = b""
        while b"\r\n" not in head and len(head) < MAX_RESPONSE_LINE:
            chunk = await stream.receive_some(MAX_RESPONSE_LINE)
            if not chunk:
                break
            head += chunk
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return False, _what(check, "not an HTTP response")
    status = int(parts[1])
    return 200 <= status < 400, _what(check, str(status))


async def _tcp(check: Check) -> tuple[bool, str]:
    assert check.port is not None
    stream = await trio.open_tcp_stream("127.0.0.1", check.port)
    await stream.aclose()
    return True, _what(check, "accepted")


async def _command(check: Check) -> tuple[bool, str]:
    assert check.command is not None
    # Its output is drained and dropped, so a chatty check never blocks on a full pipe.
    spec = launcher.LaunchSpec(check.command, check.cwd, check.env)
    code = await launcher.run(spec, watcher=check.warden)
    return code == 0, _what(check, f"exit code {code}" if code >= 0 else f"signal {-code}")


class Watchdog:
    """The probe actor of one release: ``ChildSpec("health", Watchdog(...).run)``."""

    def __init__(
        self,
        check: Check,
        options: HealthOptions,
        on_verdict: Callable[[Verdict], None],
    ) -> None:
        self.check = check
        self.options = options
        self._on_verdict = on_verdict
        self._scope: trio.CancelScope | None = None
        self._retired = False

    def retire(self) -> None:
        """The process is gone for good (its restart policy does not restart it): stop probing.

        The probe then ends normally, which its supervisor does not restart.
        """
        self._retired = True
        if self._scope is not None:
            self._scope.cancel()

    async def run(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Probe until stopped or retired; raise HealthRestart at ``restart_after``.

        Each run (each incarnation of the release's process) starts from a fresh state.
        """
        task_status.started()
        with trio.CancelScope() as self._scope:
            if self._retired:
                return
            await self._probe_forever()

    async def _probe_forever(self) -> None:
        options = self.options
        state = HealthState()
        started = trio.current_time()
        delay = WARMUP_FIRST
        answered = False
        while True:
            ok, message = await probe(self.check, options.timeout)
            answered = answered or ok
            starting = trio.current_time() - started < options.start_period
            verdict = observe(state, ok, message, options, starting)
            state = verdict.state
            self._on_verdict(verdict)
            if verdict.restart:
                raise HealthRestart(f"{state.failures} health checks failed in a row: {message}")
            if not answered:
                # Until its first answer (degraded or not), a release is probed often, so a
                # new one is found ready about as soon as it is.
                await trio.sleep(delay)
                delay = min(delay * 2, options.interval)
            else:
                await trio.sleep(options.interval)
