"""``dployr agent``: the agent's process, one ``trio.run``.

::

    root supervisor "agent" (one_for_one)
    ├─ instance NAME    the services, exactly as under ``dployr up`` (dployr.engine.instance)
    └─ uplink           the channel to the control plane (dployr.agent.uplink)

The agent holds its data dir's lock (as ``dployr up`` does), joins the control plane once
(its credential is then in ``agent.json``), and runs the same instance as ``dployr up``,
named as the control plane named it, without a gateway: it never listens for the control
plane. The uplink failing or the control plane being away never stops a service.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

import attrs
import trio

from dployr import __version__
from dployr.agent import credential
from dployr.agent.credential import Credential, JoinError
from dployr.agent.outbox import Outbox
from dployr.agent.uplink import Uplink
from dployr.config import DaemonConfig, EngineConfig
from dployr.daemon.lock import hold_lock
from dployr.daemon.paths import DataDir
from dployr.engine.instance import Instance
from dployr.engine.os import users
from dployr.store.reserve import DiskReserve
from dployr.store.store import Store
from dployr.supervision import ChildSpec, Intensity, Supervisor

OUTBOX_FILE = "outbox.db"


@attrs.frozen
class AgentConfig:
    """What ``dployr agent`` was asked."""

    engine: EngineConfig
    """The instance's settings; its ``name`` is replaced by the name the join gave."""
    url: str | None = None
    """The control plane's URL (needed to join; later the one in ``agent.json``)."""
    token: str | None = None
    """The join token (needed once, to join)."""
    name: str | None = None
    """The instance's expected name: a join token of another instance is refused."""
    ca: str | None = None
    """The CA file an ``https://`` control plane's certificate is verified against."""
    daemon: DaemonConfig = attrs.field(factory=DaemonConfig)


async def identity(config: AgentConfig, say: Callable[[str], None]) -> Credential:
    """The agent's credential: the kept one, else from a join (then kept)."""
    root = config.engine.data_dir
    kept = credential.load(root)
    if kept is not None:
        if config.name is not None and config.name != kept.instance:
            raise JoinError(
                f"{root} belongs to instance {kept.instance!r}, not {config.name!r}: "
                "give another --data-dir"
            )
        wanted = None if config.url is None else credential.check_url(config.url)
        if wanted is not None and credential.tls_upgrade(kept.url, wanted):
            # The control plane now serves TLS (dployr up --tls-cert): the same one, over
            # https from now on. Any other URL is not taken: the credential is its alone.
            say(f"{root} joined {kept.url}: the control plane serves TLS now, dialling {wanted}")
            kept = attrs.evolve(kept, url=wanted)
            credential.save(root, kept)
        elif wanted is not None and wanted != kept.url:
            say(f"{root} joined {kept.url}: dialling it, not {config.url}")
        elif config.token is not None:
            say(f"{root} already joined as instance {kept.instance}: the join token is not used")
        if config.ca is not None and config.ca != kept.ca:  # a new CA: kept for later runs
            kept = attrs.evolve(kept, ca=config.ca)
            credential.save(root, kept)
        return kept
    if config.url is None or config.token is None:
        raise JoinError(
            f"{root} has not joined a control plane: give --join URL --token TOKEN "
            "(from `dployr instances add NAME` on the control plane)"
        )
    joined = await credential.join(config.url, config.token, ca=config.ca)
    if config.name is not None and config.name != joined.instance:
        raise JoinError(
            f"the join token is instance {joined.instance!r}'s, not {config.name!r}: "
            "it is spent now; ask for a new one"
        )
    credential.save(root, joined)
    say(f"joined {joined.url} as instance {joined.instance} (credential in {root}/agent.json)")
    return joined


async def run(
    config: AgentConfig,
    *,
    out: TextIO = sys.stdout,
    task_status: trio.TaskStatus[Uplink] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the agent until cancelled; report its uplink once the instance runs."""
    say = _printer(out)
    data = DataDir(config.engine.data_dir)
    if config.engine.service_users and users.available():
        users.check_reachable(data.root)
    with hold_lock(data):
        joined = await identity(config, say)
        reserve = DiskReserve(data.root)
        reserve.make()
        store = Store.open(data.db, reserve=reserve)
        outbox = Outbox(data.root / OUTBOX_FILE)
        try:
            instance = Instance(attrs.evolve(config.engine, name=joined.instance), store)
            uplink = Uplink(instance, outbox, joined, say=say, data_dir=data.root)
            root = Supervisor(
                "agent",
                [
                    ChildSpec.supervisor("instance", instance.run),
                    ChildSpec("uplink", uplink.run),
                ],
                intensity=Intensity(config.daemon.restarts, config.daemon.restart_period),
                events=instance.events,
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(root.run)
                say(
                    f"dployr agent {__version__}: instance {joined.instance}, dialling {joined.url}"
                )
                say(f"data dir: {data.root}; Ctrl-C stops every service and exits")
                task_status.started(uplink)
                await trio.sleep_forever()
        finally:
            outbox.close()
            store.close()


def _printer(out: TextIO) -> Callable[[str], None]:
    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    return say
