"""Following a deploy or a rollback to its end: its steps, its build output, its outcome.

The steps and the build output are the deployment's lines in the service's log feed: they
are shown as they come (``==> building: ...``). The outcome is not read from those lines:
it is the :class:`~dployr.protocol.DeploymentChanged` of the instance's events feed that
says the deployment finished, and then the deployment's record says how it went. The
events feed is opened before the deploy is asked for, so its end cannot be missed.

A token limited to one service may not follow the events feed (it shows every service):
then the record is read again at each of the deployment's system lines in the log feed
(its steps, its last line), until it says the deployment finished.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import asyncclick as click
import attrs
import trio

from dployr.errors import DployrError

if TYPE_CHECKING:
    from dployr.cli.client import Client, Events, Feed
    from dployr.models import Deployment


@contextlib.asynccontextmanager
async def deployment_events(client: Client) -> AsyncIterator[Events | None]:
    """The instance's events feed, or None for a token that may not follow it."""
    from dployr.cli.client import ApiError

    async with contextlib.AsyncExitStack() as stack:
        try:
            events: Events | None = await stack.enter_async_context(client.events())
        except ApiError as error:
            if error.status != 403:
                raise
            events = None  # a token limited to one service: the log feed tells instead
        yield events


async def last_cursor(client: Client, name: str) -> int:
    """Where the service's history ends now: lines written later come after it."""
    from dployr.cli.client import ApiError

    try:
        page = await client.logs(name, tail=0)
    except ApiError as error:
        if error.status == 404:
            return 0  # a new service: its history starts now
        raise
    return page.last_cursor


async def deployment(client: Client, name: str, number: int) -> Deployment:
    """The record of deployment ``number`` of ``name``."""
    for record in await client.deployments(name, limit=20):
        if record.id == number:
            return record
    raise DployrError(f"deployment {number} of {name} is not in its history (was it deleted?)")


async def why_failed(client: Client, name: str, record: Deployment) -> str:
    """Why a deployment failed, and whether what ran before runs on."""
    from dployr.models import ServiceStatus

    reason = record.error or "the deploy failed"
    info = await client.service_info(name)
    if info.status in (ServiceStatus.RUNNING, ServiceStatus.RESTARTING):
        reason += " (the previous release is still running)"
    return reason


@attrs.define
class _Progress:
    """How far the log feed has been shown, and how far it must be once the deploy ended."""

    shown: int
    """The last cursor read from the log feed."""
    end: int | None = None
    """Where the history ended once the deployment had finished: its last line is at or
    before it. None while it runs."""

    @property
    def done(self) -> bool:
        """Whether the deployment finished and every line of it was shown."""
        return self.end is not None and self.shown >= self.end


async def follow(
    client: Client,
    name: str,
    number: int,
    cursor: int,
    events: Events | None,
    *,
    quiet: bool,
    prefix: str,
) -> Deployment:
    """Show deployment ``number``'s steps and build output until it finished; its record.

    ``cursor`` is where the service's history ended before the deploy was asked for;
    ``prefix`` starts the deployment's system lines (``deploy 7: ``). While the deploy
    waits for its new release (its health check, its minimum uptime), the time waited so
    far is shown every second. The deployment's end is published once the service is free
    again, so the next command is accepted as soon as this returns.
    """
    progress = _Progress(cursor)
    # Without the events feed, each system line of the deployment says: read the record.
    steps_send, steps = trio.open_memory_channel[None](math.inf)
    nudge = steps_send if events is None else None
    async with trio.open_nursery() as nursery:

        async def outcome() -> None:
            if events is not None:
                await _finished(events, client, name, number)
            else:
                await _finished_by_record(steps, client, name, number)
            progress.end = await last_cursor(client, name)
            if progress.done:
                nursery.cancel_scope.cancel()
            # Otherwise the log feed has lines of it still to show: show() ends there.

        nursery.start_soon(outcome)
        with steps_send:  # the log feed's end ends the steps too
            async with client.follow(name, cursor=cursor) as feed:
                await _show(feed, number, prefix, progress, nudge, quiet=quiet)
        if progress.done:
            nursery.cancel_scope.cancel()
    return await deployment(client, name, number)


async def _finished(events: Events, client: Client, name: str, number: int) -> None:
    """Wait for the event saying deployment ``number`` of ``name`` finished."""
    from dployr.protocol import DeploymentChanged, Gap

    async for event in events:
        if isinstance(event, Gap):  # it may have been among those missed
            if (await deployment(client, name, number)).status.finished:
                return
        elif (
            isinstance(event, DeploymentChanged)
            and event.service == name
            and event.deployment == number
            and event.status.finished
        ):
            return
    raise DployrError(f"the daemon closed the events feed before deploy {number} of {name} ended")


async def _finished_by_record(
    steps: trio.MemoryReceiveChannel[None], client: Client, name: str, number: int
) -> None:
    """Read the deployment's record at each of its steps until it says it finished."""
    async for _ in steps:
        if (await deployment(client, name, number)).status.finished:
            return
    raise DployrError(f"the daemon closed the log feed before deploy {number} of {name} ended")


async def _show(
    feed: Feed,
    number: int,
    prefix: str,
    progress: _Progress,
    steps: trio.MemorySendChannel[None] | None,
    *,
    quiet: bool,
) -> None:
    """Print the deployment's steps and build output from the log feed, up to its end."""
    from dployr.cli.output import visible
    from dployr.protocol import Gap

    waiting: tuple[str, float] | None = None  # the step waited on, since when
    while not progress.done:
        tick = 1.0 if waiting is not None and not quiet else math.inf
        with trio.move_on_after(tick):
            try:
                message = await feed.__anext__()
            except StopAsyncIteration:
                return
            if isinstance(message, Gap):
                progress.shown = max(progress.shown, message.last)
                continue
            progress.shown = max(progress.shown, message.cursor)
            if message.deployment != number:
                continue
            if message.stream == "system":
                if steps is not None:
                    steps.send_nowait(None)
                step = message.line.removeprefix(prefix)
                if step == message.line:
                    continue  # a line about the deployment's process, not a step
                if not quiet:
                    click.echo(f"==> {visible(step)}")
                started = trio.current_time()
                waiting = (step, started) if step.startswith("waiting for") else None
            elif message.stream == "build" and not quiet:  # shown, never obeyed by a terminal
                click.echo(f"    {visible(message.line)}")
            continue
        if waiting is not None:
            waited = trio.current_time() - waiting[1]
            click.echo(f"==> {visible(waiting[0])}: {waited:.0f} s")
