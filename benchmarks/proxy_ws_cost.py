"""What one WebSocket message costs the daemon's HTTP stack, by lines per message.

``python -m benchmarks.proxy_ws_cost`` serves ``/ws/<lines>/<count>/<shared>`` with QuartTrio
on Hypercorn (the daemon's stack: Quart's websocket, Hypercorn's trio worker, wsproto) and
prints its port. A client that connects gets ``count`` messages of ``lines`` log-feed
objects each, then ``done``; the server then prints (to stdout, one JSON object a line) the
CPU it spent per message and per line. With ``shared=0`` each message is encoded as it is
sent, as each subscriber of the log feed does now; with ``shared=1`` one encoded text is sent
over and over, as a feed that encodes each batch once for all its subscribers would.
:func:`measure` runs the server in a process of its own and the client here.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from quart import websocket
from quart_trio import QuartTrio
from trio_websocket import ConnectionClosed, open_websocket_url

LINE = {
    "type": "log",
    "cursor": 123456,
    "ts": 1795741433.359813,
    "stream": "stdout",
    "line": "1795741433.359813 123456 " + "x" * 40,
    "deployment": 1,
    "continued": False,
}
CASES = ((1, 20_000, False), (10, 5_000, False), (100, 1_000, False), (100, 1_000, True))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve() -> None:
    """Serve the sender route on a free port; print the port, then one report per client."""
    app = QuartTrio(__name__)

    @app.websocket("/ws/<int:lines>/<int:count>/<int:shared>")
    async def sender(lines: int, count: int, shared: int) -> None:
        await websocket.accept()
        before = _cpu()
        if lines == 1 and not shared:
            for _ in range(count):
                await websocket.send(json.dumps(LINE))
        else:
            text = json.dumps({"type": "logs", "lines": [LINE] * lines})
            for _ in range(count):
                if not shared:
                    text = json.dumps({"type": "logs", "lines": [LINE] * lines})
                await websocket.send(text)
        cpu = _cpu() - before
        report = {"lines": lines, "shared": bool(shared), "per_message_us": cpu / count * 1e6}
        print(json.dumps(report), flush=True)
        await websocket.send("done")

    async def main() -> None:
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(hypercorn_serve, app, config)  # type: ignore[arg-type]
            print(binds[0].rsplit(":", 1)[1], flush=True)

    trio.run(main)


async def _receive_all(port: int, lines: int, count: int, shared: bool) -> None:
    url = f"ws://127.0.0.1:{port}/ws/{lines}/{count}/{int(shared)}"
    async with open_websocket_url(url, max_message_size=64 * 2**20) as ws:
        with trio.fail_after(120):
            try:
                while True:  # until the server closes, after "done"
                    await ws.get_message()
            except ConnectionClosed:
                pass


def measure() -> list[dict[str, object]]:
    """The server's CPU per message for each of CASES."""
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.proxy_ws_cost"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        reports = []
        for lines, count, shared in CASES:
            trio.run(_receive_all, port, lines, count, shared)
            reports.append(json.loads(server.stdout.readline()))
            time.sleep(0.1)
        return reports
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    serve()
