"""The apps the proxy benchmark deploys, as source text written into a git repository.

* :data:`QUART_APP`: a Quart app served by Hypercorn, the kind of app people deploy, with
  ``/`` (a short text naming its version) and ``/health``.
* :data:`FAST_APP`: a minimal HTTP/1.1 responder on asyncio's ``Protocol`` API, no
  framework: a fixed 13-byte answer, keep-alive unless the request says
  ``Connection: close``, and ``GET /big`` sending a file with ``sendfile``; it listens on
  ``$PORT``, or on the socket handed to it as fd 3 when ``LISTEN_FDS=1``. It shows the
  proxy's own ceiling: it costs a fraction of what the proxy costs per request.
* :data:`LOGGER_APP`: prints ``RATE`` lines a second to stdout, each starting with
  ``time.time()`` when it was written, so a feed subscriber can tell the delivery delay.
"""

from __future__ import annotations

QUART_APP = '''\
"""A small Quart app: GET / names its version, GET /health says ok."""
import os

from quart import Quart

app = Quart(__name__)
VERSION = open("VERSION").read().strip() if os.path.exists("VERSION") else "v1"


@app.get("/")
async def index():
    return f"hello {VERSION}"


@app.get("/health")
async def health():
    return "ok"
'''

FAST_APP = '''\
"""A minimal HTTP/1.1 responder: a fixed answer, keep-alive, GET /big by sendfile."""
import asyncio
import os
import socket

PORT = int(os.environ.get("PORT", "0"))
BODY = b"Hello, world!"
KEEP = b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n%s" % (len(BODY), BODY)
CLOSE = b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\nConnection: close\\r\\n\\r\\n%s" % (
    len(BODY),
    BODY,
)
BIG = os.path.abspath("big.bin")


class Http(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        while (end := self.buffer.find(b"\\r\\n\\r\\n")) >= 0:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            if head.startswith(b"GET /big "):
                self.transport.pause_reading()
                asyncio.ensure_future(self.send_big())
                return
            if b"connection: close" in head.lower():
                self.transport.write(CLOSE)
                self.transport.close()
                return
            self.transport.write(KEEP)

    async def send_big(self):
        with open(BIG, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            self.transport.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % size)
            await asyncio.get_running_loop().sendfile(self.transport, file)
        self.transport.resume_reading()


async def main():
    if not os.path.exists(BIG):
        with open(BIG + ".tmp", "wb") as file:
            chunk = os.urandom(1 << 20)
            for _ in range(100):
                file.write(chunk)
        os.rename(BIG + ".tmp", BIG)
    loop = asyncio.get_running_loop()
    if os.environ.get("LISTEN_FDS") == "1":  # the public socket, handed over as fd 3
        server = await loop.create_server(Http, sock=socket.socket(fileno=3))
    else:
        server = await loop.create_server(Http, "127.0.0.1", PORT, backlog=1024)
    print(f"listening on {server.sockets[0].getsockname()}", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
'''

LOGGER_APP = '''\
"""Print RATE lines a second, each starting with time.time() when it was written."""
import os
import sys
import time

RATE = int(os.environ.get("RATE", "10000"))
TICK = 0.001
PAD = "x" * 40
write = sys.stdout.write
flush = sys.stdout.flush
start = time.monotonic()
sent = 0
while True:
    due = int((time.monotonic() - start) * RATE)
    if due > sent:
        now = time.time()
        write("".join(f"{now:.6f} {n} {PAD}\\n" for n in range(sent, due)))
        flush()
        sent = due
    time.sleep(TICK)
'''
