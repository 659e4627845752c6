"""An engine instance with restart backoff disabled, in a process of its own.

``python -m benchmarks.engine_instance DATA_DIR SOURCE NAME COMMAND`` runs an
:class:`~dployr.engine.instance.Instance` (no gateway) whose releases restart at once
(a restart policy with no delay and a budget of 1,000 restarts a minute), deploys one
service ``NAME`` running ``COMMAND`` from the local folder ``SOURCE``, and serves until SIGTERM. The
restart-latency benchmark drives it from outside, as it drives the peers: the daemon's
defaults back off on purpose, so a crash after a short uptime is not restarted at once.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import trio

from dployr.engine.instance import EngineConfig, Instance
from dployr.models import RestartPolicy, ServiceSettings, Source
from dployr.protocol.messages import Deploy
from dployr.store.store import Store

NO_BACKOFF = RestartPolicy(delay=0.0, max_delay=0.0, max_restarts=1000, window=60.0, min_uptime=0.0)
"""Every restart at once, with a budget of 1,000 restarts a minute."""


async def serve(data_dir: Path, source: Path, name: str, command: str) -> None:
    """Run the instance and its one service until SIGTERM."""
    store = Store.open(data_dir / "dployr.db")
    config = EngineConfig(
        data_dir=data_dir,
        service_host="127.0.0.1",
        service_users=False,  # as root, a service user could not reach this interpreter
    )
    instance = Instance(config, store)
    try:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                handle = await nursery.start(instance.run)
                settings = ServiceSettings(
                    source=Source(str(source)), run_cmd=command, restart=NO_BACKOFF
                )
                await handle.request(Deploy(name, settings))
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break
    finally:
        store.close()


def main() -> None:
    data_dir, source, name, command = sys.argv[1:5]
    trio.run(serve, Path(data_dir), Path(source), name, command)


if __name__ == "__main__":
    main()
