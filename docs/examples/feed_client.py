"""Follow a dployr service's log feed; resume from the last cursor after a disconnect.

    python docs/examples/feed_client.py --url http://127.0.0.1:7879 --token T NAME
    python docs/examples/feed_client.py --data-dir ~/.local/share/dployr NAME

Prints each log line as ``<cursor> <stream> <text>``, and what it does about the
connection on stderr. It starts with the last ``--tail`` lines, or after ``--cursor C``.
When the connection drops (the daemon restarts, the network breaks) it connects again
with ``?cursor=<the last cursor it printed>``, so no line is missed or printed twice.
When it falls behind and the feed sends a ``gap``, it reads the missed lines over REST.
With ``--data-dir`` it reads the daemon's URL and admin token from that data dir at
every connection, so it also finds a daemon that came back on another port.

Needs only the standard library, trio and trio-websocket. See docs/feeds.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError, open_websocket_url

PAGE = 10_000
"""Lines per REST request when filling a gap (the most the API gives at once)."""
RETRY_FIRST, RETRY_MAX = 0.2, 5.0
"""Seconds to wait before connecting again: doubling from the first, up to the max."""


FATAL = (400, 401, 404, 422)
"""HTTP statuses a retry will not change: a bad request or token, an unknown service."""


class Fatal(Exception):
    """Retrying will not help."""


def endpoint(args: argparse.Namespace) -> tuple[str, str]:
    """The daemon's URL and the token to use."""
    if args.data_dir is None:
        return args.url.rstrip("/"), args.token
    data = Path(args.data_dir).expanduser()
    try:  # daemon.json exists while a daemon runs on the data dir
        url = json.loads((data / "daemon.json").read_text())["url"]
        token = (data / "admin-token").read_text().strip()
    except (OSError, ValueError, KeyError) as error:
        raise OSError(f"no daemon is running on {data}") from error
    return url, token


def get_json(url: str, token: str, path: str, params: dict[str, int]) -> Any:
    """``GET`` a REST path; blocking, so called in a worker thread."""
    query = urllib.parse.urlencode(params)
    request = urllib.request.Request(
        f"{url}/api/v1{path}?{query}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        if error.code in FATAL:
            raise Fatal(json.load(error)["error"]["message"]) from None
        raise OSError(f"the daemon answered {error.code}") from None


def show(line: dict[str, Any]) -> None:
    """Print one log line (a feed message and a REST line have the same fields)."""
    print(line["cursor"], line["stream"], line["line"])


class Follower:
    """Where the client is in the service's log: ``cursor`` is the last line printed."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.logs = f"/services/{urllib.parse.quote(args.name, safe='')}/logs"
        self.cursor: int | None = args.cursor
        self.delay = RETRY_FIRST

    async def rest(self, url: str, token: str, **params: int) -> Any:
        call = functools.partial(get_json, url, token, self.logs, params)
        return await trio.to_thread.run_sync(call)

    async def follow_once(self, url: str, token: str) -> None:
        """Follow the feed until the connection ends (returns) or fails (raises)."""
        if self.cursor is None:  # the first time: the last lines, then everything after
            page = await self.rest(url, token, tail=self.args.tail)
            for line in page["lines"]:
                show(line)
            self.cursor = page["last_cursor"]
        query = urllib.parse.urlencode({"cursor": self.cursor})
        feed = url.replace("http", "ws", 1) + f"/api/v1{self.logs}/stream?{query}"
        bearer = [(b"Authorization", f"Bearer {token}".encode())]
        async with open_websocket_url(feed, extra_headers=bearer) as ws:
            print(f"following {self.args.name} after cursor {self.cursor}", file=sys.stderr)
            self.delay = RETRY_FIRST
            while True:
                try:
                    message = json.loads(await ws.get_message())
                except ConnectionClosed:
                    return
                if message["type"] == "logs":  # the lines that arrived together
                    for line in message["lines"]:
                        show(line)
                        self.cursor = line["cursor"]
                elif message["type"] == "gap":
                    await self.fill(url, token, message["from"], message["to"])

    async def fill(self, url: str, token: str, first: int, last: int) -> None:
        """Read the cursors a gap names over REST; say which are gone from history."""
        print(f"gap: cursors {first}-{last} missed, reading them over REST", file=sys.stderr)
        after = first - 1
        while after < last:
            page = await self.rest(url, token, after=after, limit=PAGE)
            lines = [line for line in page["lines"] if line["cursor"] <= last]
            if not lines:
                break
            if lines[0]["cursor"] > after + 1:
                gone = f"{after + 1}-{lines[0]['cursor'] - 1}"
                print(f"lost: cursors {gone} are no longer in history", file=sys.stderr)
            for line in lines:
                show(line)
            after = lines[-1]["cursor"]
        if after < last:
            print(f"lost: cursors {after + 1}-{last} are no longer in history", file=sys.stderr)
        self.cursor = last

    async def run(self) -> None:
        """Follow for ever, connecting again after every disconnect."""
        while True:
            try:
                url, token = endpoint(self.args)
                await self.follow_once(url, token)
                reason = "the feed closed"
            except ConnectionRejected as error:
                if error.status_code in FATAL:
                    body = json.loads(error.body or b"{}")
                    raise Fatal(body.get("error", {}).get("message", str(error))) from None
                reason = f"the daemon refused the feed ({error.status_code})"
            except (HandshakeError, OSError) as error:
                reason = str(error) or str(error.__cause__) or type(error).__name__
            print(f"disconnected ({reason}); connecting again in {self.delay:g} s", file=sys.stderr)
            await trio.sleep(self.delay)
            self.delay = min(self.delay * 2, RETRY_MAX)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the service whose log to follow")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="the daemon's URL, e.g. http://127.0.0.1:7879")
    where.add_argument("--data-dir", help="read the URL and admin token from this data dir")
    parser.add_argument("--token", help="an API token (with --url)")
    parser.add_argument("--cursor", type=int, help="start after this cursor (0: all history)")
    parser.add_argument("--tail", type=int, default=10, help="else start with the last N lines")
    args = parser.parse_args(argv)
    if args.url is not None and not args.token:
        parser.error("--url needs --token")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    interrupted = False
    try:
        try:
            trio.run(Follower(args).run)
        except* KeyboardInterrupt:  # Ctrl-C, wherever trio delivered it
            interrupted = True
    except Fatal as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
