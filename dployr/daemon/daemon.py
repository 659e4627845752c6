"""``dployr up``: one process, one ``trio.run``, the root supervisor of everything.

::

    root supervisor "dployr" (one_for_one)
    ├─ instance "local"     the services (see dployr.engine.instance)
    ├─ cluster              the local instance and the connected agents as one handle,
    │                       routing by placement (see dployr.cluster.router)
    ├─ peers                this control plane among those sharing the cluster state;
    │                       the leader's background work (see dployr.cluster.peers)
    └─ gateway              Hypercorn + Quart-Trio: REST API, WebSocket feeds, dashboard

The store (SQLite) and the cluster's state (``cluster.db``, or ``--database``) are opened
before the tree and closed after it. A lock on the data dir
makes a second daemon on the same data dir refuse to start instead of running services
twice; the admin token is created on first start.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import pwd
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import trio

from dployr import __version__
from dployr.cluster import ClusterHandle
from dployr.cluster.hub import AgentHub
from dployr.cluster.peers import Peers, default_url
from dployr.cluster.uploads import Uploads
from dployr.config import DployrConfig
from dployr.daemon.lock import hold_lock  # shared with `dployr agent`
from dployr.daemon.paths import DataDir
from dployr.engine.instance import Instance
from dployr.engine.os import users
from dployr.gateway.server import Gateway
from dployr.store.access_store import AccessStore
from dployr.store.cluster import ClusterState, open_cluster_state
from dployr.store.records import Scope
from dployr.store.reserve import DiskReserve
from dployr.store.store import Store
from dployr.supervision import ChildSpec, Intensity, Supervisor


def ensure_admin_token(store: Store, data: DataDir) -> bool:
    """Make sure ``admin-token`` holds a valid admin token (mode 0600); True if one was created.

    The token is called ``admin``. Revoking it (``dployr tokens revoke admin``) and
    restarting the daemon is how it is rotated.
    """
    path = data.admin_token
    try:
        record = store.authenticate(path.read_text().strip(), use=False)
        if record is not None and record.scope is Scope.ADMIN and record.service is None:
            path.chmod(0o600)
            return False
    except OSError:
        pass
    if any(t.name == "admin" for t in store.list_tokens()):
        store.delete_token("admin")
    token = store.create_token("admin")
    partial = path.with_name(".admin-token.new")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    partial.replace(path)
    return True


async def run(
    config: DployrConfig,
    *,
    out: TextIO = sys.stdout,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon until cancelled; report the URL it serves once everything is up."""
    data = DataDir(config.data_dir)
    if config.engine.service_users and users.available():
        users.check_reachable(data.root)
    with hold_lock(data):
        # Space held back for the database, so that a disk filled by logs cannot stop
        # the daemon from recording what it does (see dployr/store/reserve.py).
        reserve = DiskReserve(data.root)
        reserve.make()
        store = Store.open(data.db, reserve=reserve)
        state: ClusterState | None = None
        try:
            created = ensure_admin_token(store, data)
            database = config.daemon.database
            if database is None:  # SQLite: used from the thread that opened it
                state = open_cluster_state(None, data.root)
            else:  # PostgreSQL is reached and migrated here (up to 10 s): off the event loop
                state = await trio.to_thread.run_sync(open_cluster_state, database, data.root)
            instance = Instance(config.engine, store)
            hub = AgentHub(state)  # the agents: docs/agent-protocol.md
            # Folders the CLI uploads, until a deploy takes them (dployr/cluster/uploads.py).
            uploads = Uploads(data.root / "uploads", max_size=config.daemon.max_upload)
            cluster = ClusterHandle(
                instance.handle,
                hub,
                state,
                local_services=config.daemon.local_services,
                uploads=uploads,
            )
            gateway = Gateway(
                cluster,
                AccessStore(store),  # the gateway sees tokens and audit, with protocol errors
                config.gateway.host,
                config.gateway.port,
                dashboard_key_file=data.dashboard_key,
                door=hub,  # agents join and dial in (dployr/gateway/agents.py)
                tls_cert=config.gateway.tls_cert,
                tls_key=config.gateway.tls_key,
                uploads=uploads,
            )
            gateway.bind()  # before any service starts: a taken port is one clear error
            # This control plane among those sharing the state; the leader's work.
            peers = _peers(config, state, hub, gateway)
            root = Supervisor(
                "dployr",
                [
                    ChildSpec.supervisor("instance", instance.run),
                    ChildSpec("cluster", cluster.run),
                    ChildSpec("peers", peers.run),
                    ChildSpec("gateway", gateway.run, shutdown=config.gateway.shutdown),
                ],
                intensity=Intensity(config.daemon.restarts, config.daemon.restart_period),
                events=instance.events,  # the root's reports reach the events feed too
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(root.run)
                url = gateway.url
                _write_endpoint(data, url, config.gateway.tls_cert)
                try:
                    say = _printer(out)
                    _say_up(say, url, data, instance, created=created)
                    if database is not None:  # one of several control planes: who leads
                        peers.tell(say)
                    task_status.started(url)
                    # What start-up made (modules, the app, the services) lives as long as
                    # the daemon: out of the collector's sight, a full collection is short.
                    # A request makes thousands of short-lived objects: collecting the young
                    # every 20,000 instead of 700 keeps collections out of most requests.
                    # `dployr up` starts the daemon with the collector off: what start-up
                    # left as garbage is collected once, before the rest is frozen.
                    gc.collect()
                    gc.freeze()
                    gc.set_threshold(20_000, 20, 20)
                    gc.enable()
                    await trio.sleep_forever()
                finally:
                    with contextlib.suppress(OSError):
                        data.endpoint.unlink()
        finally:
            if state is not None:
                with trio.CancelScope(shield=True):
                    await state.aclose()
            store.close()


def _peers(config: DployrConfig, state: ClusterState, hub: AgentHub, gateway: Gateway) -> Peers:
    """This control plane among those sharing the state, told to agents at ``--advertise``
    (else the gateway's URL); the gateway lists them (``GET /api/v1/control-planes``)."""
    advertised = config.daemon.advertise or default_url(
        gateway.url, gateway.host, gateway.port, socket.gethostname()
    )
    peers = Peers(state, hub, advertised)
    gateway.control_planes = peers
    return peers


def _say_up(
    say: Callable[[str], None], url: str, data: DataDir, instance: Instance, *, created: bool
) -> None:
    """The four lines that tell the user the daemon is up."""
    say(f"dployr {__version__} is up: {url} (API and dashboard)")
    token_is = "a new admin token is in" if created else "admin token:"
    say(f"{token_is} {data.admin_token}")
    say(f"data dir: {data.root}; Ctrl-C stops every service and exits")
    say(_who_runs_services(instance))


def _who_runs_services(instance: Instance) -> str:
    """One line on which user services run as, and what that means."""
    if instance.users is not None:
        return (
            f"services run as users of their own (ids {users.FIRST_UID}-{users.LAST_UID}):"
            " none can read dployr's data dir or another service's files"
        )
    try:
        name = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        name = f"uid {os.geteuid()}"
    return (
        f"services run as {name}, dployr's own user: they can read its data dir, "
        "keys and token (see docs/security.md)"
    )


def _write_endpoint(data: DataDir, url: str, tls_cert: Path | None) -> None:
    endpoint: dict[str, object] = {"url": url, "pid": os.getpid(), "version": __version__}
    if tls_cert is not None:  # the local CLI trusts exactly this certificate
        endpoint["tls_cert"] = str(tls_cert)
    partial = data.endpoint.with_name(".daemon.json.new")
    partial.write_text(json.dumps(endpoint))
    partial.replace(data.endpoint)


def _printer(out: TextIO) -> Callable[[str], None]:
    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    return say
