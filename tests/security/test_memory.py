"""Hostile readers cost the daemon a bounded, small amount of memory, whatever they ask for.

RSS is read from /proc (psutil) before and after, with generous margins: what is measured is
that a 20 MB answer is not built, not the exact size of the daemon.
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest
import trio
from trio_websocket import open_websocket_url

from dployr.logs.history import LogHistory
from dployr.logs.values import LogLine
from tests.helpers import PYTHON, Daemon, make_repo
from tests.logs.test_history import make_batch

MB = 1 << 20
HUGE_LINE = f"{PYTHON} -c \"print('x' * 20_000_000)\""


async def deploy_and_wait(daemon: Daemon, name: str, body: dict[str, object]) -> None:
    """Deploy, and wait (on the events feed) until the deployment has succeeded."""
    url = daemon.url.replace("http://", "ws://") + f"/api/v1/events?token={daemon.token}"
    with trio.fail_after(120):
        async with open_websocket_url(url) as events, daemon.client() as api:
            response = await api.post(f"/services/{name}/deploy", json=body)
            assert response.status_code == 202, response.text
            number = response.json()["id"]
            while True:
                message = json.loads(await events.get_message())
                if message["type"] == "deployment" and message["deployment"] == number:
                    assert message["status"] != "failed", message
                    if message["status"] == "succeeded":
                        return


def rss(daemon: Daemon) -> int:
    assert daemon.process is not None
    return int(psutil.Process(daemon.process.pid).memory_info().rss)


@pytest.mark.slow
async def test_reading_a_20_mb_line_back_costs_about_a_page_not_the_line(
    daemon: Daemon, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {"README": "a service that builds one huge line\n"})
    body = {"remote": {"url": str(repo)}, "build_cmd": HUGE_LINE, "run_cmd": "sleep 600"}
    await deploy_and_wait(daemon, "huge", body)
    async with daemon.client() as api:
        await api.get("/services/huge/logs", params={"tail": 1})  # the route's first use
        before = rss(daemon)
        for _ in range(3):
            response = await api.get(
                "/services/huge/logs", params={"tail": 10_000, "streams": "build"}
            )
            assert len(response.content) < 2 * MB  # one page, not the 20 MB line
            page = response.json()
            assert not page["lines"][-1]["continued"]  # the newest pieces: the line's end
        # The line can still be read whole, a page at a time, with `after`.
        pages, text, after = 0, 0, 0
        while True:
            response = await api.get(
                "/services/huge/logs", params={"after": after, "limit": 10_000, "streams": "build"}
            )
            lines = response.json()["lines"]
            if not lines:
                break
            pages += 1
            text += sum(len(line["line"]) for line in lines if line["line"].startswith("x"))
            after = lines[-1]["cursor"]
        after_reading = rss(daemon)
        await api.delete("/services/huge")
    assert pages >= 10
    assert text == 20_000_000
    assert after_reading - before < 15 * MB, (before // MB, after_reading // MB)


@pytest.mark.parametrize("max_text", [1, 7, 50, 10_000])
def test_pages_bounded_by_text_read_the_whole_history_in_order(
    tmp_path: Path, max_text: int
) -> None:
    with LogHistory(tmp_path, segment_bytes=4096) as history:
        for first in range(1, 400, 4):
            texts = [f"line {first + i} " + "y" * ((first + i) % 23) for i in range(4)]
            stream = "stderr" if first % 3 else "stdout"
            history.append(make_batch(first, texts, stream=stream))
        for streams in (None, {"stdout"}):
            whole = history.read(limit=10_000, streams=streams)
            paged: list[LogLine] = []
            while True:
                after = paged[-1].cursor if paged else None
                page = history.read(after=after, limit=10_000, streams=streams, max_text=max_text)
                if not page:
                    break
                assert len(page) == 1 or sum(len(line.line) for line in page) <= max_text
                paged += page
            assert paged == whole
            tail = history.tail(10_000, streams, max_text=max_text)
            assert tail == whole[len(whole) - len(tail) :]
            assert len(tail) == 1 or sum(len(line.line) for line in tail) <= max_text
            if len(tail) < len(whole):  # one line more would not have fit
                assert sum(len(line.line) for line in whole[-len(tail) - 1 :]) > max_text


LOUD_BUILD = f"{PYTHON} -c \"[print(str(i) + ' ' + 'y' * 4000) for i in range(10_000)]\""


@pytest.mark.slow
async def test_sixty_websocket_readers_that_never_read_cost_a_bounded_amount(
    daemon: Daemon, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {"README": "a service with 40 MB of log history\n"})
    body = {"remote": {"url": str(repo)}, "build_cmd": LOUD_BUILD, "run_cmd": "sleep 600"}
    await deploy_and_wait(daemon, "loud", body)
    base = daemon.url.replace("http://", "ws://") + "/api/v1/services/loud/logs/stream"
    started = trio.Semaphore(0)
    before = rss(daemon)

    async def stalled_reader(query: str, done: trio.Event) -> None:
        # A queue of 0: once this reader stops asking, trio-websocket stops reading the
        # socket, and the daemon's sends block as a stalled browser's would.
        async with open_websocket_url(
            f"{base}?{query}&token={daemon.token}", message_queue_size=0
        ) as ws:
            await ws.get_message()  # the daemon has read its history and is sending it
            started.release()
            await done.wait()

    done = trio.Event()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for index in range(60):
                query = "tail=10000" if index % 2 else "cursor=0"
                nursery.start_soon(stalled_reader, query, done)
            for _ in range(60):
                await started.acquire()
            stalled = rss(daemon)
            async with daemon.client() as api:  # the daemon still answers at once
                assert (await api.get(daemon.url + "/healthz")).status_code == 200
            done.set()
        async with daemon.client() as api:
            await api.delete("/services/loud")
    # Each reader held its 10,000 lines (40 MB: 54 -> 1396 MB in all); now a page of history
    # (a tail of at most 512 KiB of text, 256 KiB pages after a cursor) and the messages
    # encoded from it are its bound: about 1 MiB a reader, 60-71 MB seen in all.
    assert stalled - before < 80 * MB, (before // MB, stalled // MB)
