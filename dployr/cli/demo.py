"""``dployr demo``: a live supervised tree that restarts a crashing child."""

from __future__ import annotations

import asyncclick as click


@click.command()
@click.option("--crash-every", default=2.0, show_default=True, help="Seconds between crashes.")
async def demo(crash_every: float) -> None:
    """Run a small supervised tree and print its supervision events until Ctrl-C."""
    import trio

    from dployr.supervision import (
        Backoff,
        ChildContext,
        ChildSpec,
        Intensity,
        SupervisionEvent,
        Supervisor,
        Topic,
    )

    async def heartbeat(
        ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            await trio.sleep(5)
            click.echo(f"  {'/'.join(ctx.path)}: still up (incarnation {ctx.incarnation})")

    async def flaky(
        ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        await trio.sleep(crash_every)
        raise RuntimeError(f"simulated crash #{ctx.incarnation}")

    events: Topic[SupervisionEvent] = Topic("events")
    worker = Supervisor(
        "workers",
        [ChildSpec("flaky", flaky, backoff=Backoff(initial=1, cap=8, stable=30))],
        intensity=Intensity(5, 60),
    )
    root = Supervisor(
        "root",
        [
            ChildSpec("heartbeat", heartbeat),
            ChildSpec("workers", worker.run, shutdown=float("inf")),
        ],
        intensity=Intensity(10, 600),
        events=events,
    )
    from dployr.cli._runtime import until_signalled

    async def show() -> None:
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            with events.subscribe() as sub:
                nursery.start_soon(root.run)
                async for batch in sub:
                    for event in batch if isinstance(batch, list) else []:
                        where = "/".join(event.supervisor)
                        seconds = event.at - start
                        click.echo(f"{seconds:7.2f}s  {where}: {event.describe()}")

    click.echo("A supervised tree: root -> [heartbeat, workers -> [flaky]]. Ctrl-C stops it.")
    await until_signalled(show)
    click.echo("stopped")
