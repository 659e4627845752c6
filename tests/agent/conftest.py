"""A control plane (in this process, so a test can reach its hub) and real ``dployr agent``
processes dialling it, each on a data dir of its own.

:class:`AgentProcess` (and :func:`agent`) is the one way the tests start an agent, here and
in tests/cluster/, whatever it dials and however the test ends it."""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import trio

from dployr.cluster.hub import AgentHub
from dployr.engine.instance import EngineConfig, Instance
from dployr.gateway.server import Gateway
from dployr.store.access_store import AccessStore
from dployr.store.cluster import ClusterState, open_cluster_state
from dployr.store.store import Store
from tests.helpers import PYTHON, TEST_ENGINE, UP_ARGS, Output

WAIT = 30.0
"""A guard on every wait: a test that waits longer than this has failed."""

HEARTBEAT = 0.5
"""The tests' control planes ping every half second, and take 2 s of silence as away."""
AWAY_AFTER = 2.0


@attrs.frozen
class ControlPlane:
    """A control plane served on ``url``: its hub, cluster state and admin token."""

    url: str
    hub: AgentHub
    state: ClusterState
    token: str
    data_dir: Path

    async def join_token(self, name: str) -> str:
        """A join token for a new instance ``name``."""
        return (await self.state.add_instance(name)).token


@contextlib.asynccontextmanager
async def control_plane(data_dir: Path, port: int = 0) -> AsyncIterator[ControlPlane]:
    """The daemon's parts, a gateway with the agents' door among them, in this process."""
    data_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 -- a test's own folder
    store = Store.open(data_dir / "dployr.db")
    state = open_cluster_state(None, data_dir)
    try:
        token = store.create_token(f"admin-{os.urandom(3).hex()}")
        instance = Instance(
            EngineConfig(data_dir=data_dir, service_host="127.0.0.1", **TEST_ENGINE), store
        )
        hub = AgentHub(state, heartbeat=HEARTBEAT, away_after=AWAY_AFTER)
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(instance.run)
            gateway = Gateway(handle, AccessStore(store), "127.0.0.1", port, door=hub)
            url = await nursery.start(gateway.run, None)
            yield ControlPlane(url, hub, state, token, data_dir)
            nursery.cancel_scope.cancel()
    finally:
        await state.aclose()
        store.close()


async def wait_connected(hub: AgentHub, name: str) -> None:
    """Until instance ``name`` is connected to ``hub``."""
    with trio.fail_after(WAIT):
        while hub.member(name) is None:
            await hub.changed.wait()


async def wait_away(hub: AgentHub, name: str) -> None:
    """Until instance ``name`` is not connected to ``hub``."""
    with trio.fail_after(WAIT):
        while hub.member(name) is not None:
            await hub.changed.wait()


class AgentProcess:
    """``dployr agent`` on a data dir of its own, with the tests' engine settings; what it
    prints is read line by line as the test waits for it (its stderr goes to
    ``DATA_DIR.stderr``, beside the data dir)."""

    def __init__(self, data_dir: Path, process: trio.Process) -> None:
        self.data_dir = data_dir
        self.process = process
        assert process.stdout is not None
        self.output = Output(process.stdout)

    @classmethod
    async def start(cls, data_dir: Path, *args: str) -> AgentProcess:
        """Start ``dployr agent --data-dir DATA_DIR ARGS``: ``--join URL --token TOKEN`` to
        join a control plane; no ``--token`` to start again with the credential saved on
        joining; ``--ca CERT`` for a control plane serving TLS. Returned at once: wait for
        ``connected to the control plane`` when it matters."""
        data_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 -- a test's own folder
        stderr = (data_dir.parent / f"{data_dir.name}.stderr").open("ab")
        process = await trio.lowlevel.open_process(
            [
                *(PYTHON, "-m", "dployr", "agent", "--data-dir", str(data_dir)),
                *("--service-host", "127.0.0.1", "--metrics-interval", "0.5", *UP_ARGS, *args),
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env={k: v for k, v in os.environ.items() if not k.startswith("DPLOYR_")},
        )
        stderr.close()
        return cls(data_dir, process)

    @property
    def lines(self) -> list[str]:
        """Every line it printed so far (that a wait has read)."""
        return self.output.lines

    async def wait_for(self, text: str) -> str:
        """The next line (not gone past by an earlier wait) holding ``text``."""
        return await self.output.wait_for(text)

    @property
    def returncode(self) -> int | None:
        """Its exit code, once it has ended and been waited for (None before)."""
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the agent (its services' processes are left to its warden)."""
        self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> int:
        """SIGTERM (unless it ended already), and wait for the exit (its services stopped
        gracefully): its exit code. Everything it printed is in :attr:`lines` then."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        with trio.fail_after(WAIT):
            await self.output.read_to_end()
            return await self.process.wait()


@contextlib.asynccontextmanager
async def agent(data_dir: Path, *args: str) -> AsyncIterator[AgentProcess]:
    """An agent process (see :meth:`AgentProcess.start`), stopped at the end (or reaped,
    when the test killed it)."""
    process = await AgentProcess.start(data_dir, *args)
    try:
        yield process
    finally:
        with trio.CancelScope(shield=True):
            await process.stop()


class Partition:
    """A TCP proxy the test controls, between agents and their control plane: ``cut()``
    stops every byte both ways while the connections stay open (nothing is closed, as in a
    network partition); ``heal()`` lets them flow again."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._flowing = trio.Event()
        self._flowing.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        self._flowing = trio.Event()

    def heal(self) -> None:
        self._flowing.set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, client: trio.SocketStream) -> None:
        server = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
        async with client, server, trio.open_nursery() as nursery:
            nursery.start_soon(self._pipe, client, server, nursery.cancel_scope)
            nursery.start_soon(self._pipe, server, client, nursery.cancel_scope)

    async def _pipe(
        self, source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope
    ) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await source.receive_some(65536):
                await self._flowing.wait()
                await sink.send_all(data)
        scope.cancel()


class TlsProxy:
    """TLS in front of a control plane, as a proxy terminating it would be."""

    def __init__(self, upstream_port: int, cert: Path, key: Path) -> None:
        self.upstream_port = upstream_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.port = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_ssl_over_tcp_listeners(0, self.context, host="127.0.0.1")
        self.port = listeners[0].transport_listener.socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, client: trio.SSLStream[trio.SocketStream]) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            server = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
            async with client, server, trio.open_nursery() as nursery:
                nursery.start_soon(_pipe, client, server, nursery.cancel_scope)
                nursery.start_soon(_pipe, server, client, nursery.cancel_scope)


async def _pipe(source: trio.abc.Stream, sink: trio.abc.Stream, scope: trio.CancelScope) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    scope.cancel()
