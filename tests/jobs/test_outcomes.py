"""What a job's outcomes do: missed runs are recorded, health follows, webhooks fire."""

from __future__ import annotations

import functools
import itertools
import json
import time
from pathlib import Path

import trio

from dployr.models import Health, HealthOptions
from dployr.protocol.messages import Restart
from dployr.schedule import JobOptions, RunStatus, Trigger
from tests.engine.conftest import Engine
from tests.jobs.helpers import job_folder, job_settings, runner, runs, wait_run

DAY = 86400


async def test_runs_missed_past_the_deadline_are_recorded_and_reach_the_webhook(
    engine: Engine, tmp_path: Path
) -> None:
    received: list[dict[str, object]] = []
    arrived = trio.Event()

    async def receiver(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        while len(body) < length:
            body += await stream.receive_some(65536)
        received.append(json.loads(body))
        await stream.send_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        await stream.aclose()
        if len(received) == 2:
            arrived.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, receiver, 0, host="127.0.0.1")
        )
        hook = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/hook"
        folder = job_folder(tmp_path / "app", "echo nope\nexit 1\n")
        options = JobOptions(schedule="0 3 * * *", starting_deadline=0)
        await engine.deploy(
            "nightly", job_settings(folder, options, health=HealthOptions(webhook=hook))
        )
        job = runner(engine, "nightly")
        # Three nights go by unseen (the calendar moves on while the job is restarted).
        job.wall = lambda: time.time() + 3 * DAY  # type: ignore[method-assign]
        await engine.handle.request(Restart("nightly"))
        missed = sorted(runs(engine, "nightly").values(), key=lambda r: r.id)
        assert [r.status for r in missed] == [RunStatus.MISSED] * 3
        assert all(r.trigger is Trigger.SCHEDULE for r in missed)
        due = [r.scheduled_at or 0 for r in missed]
        assert [b - a for a, b in itertools.pairwise(due)] == [DAY, DAY]
        assert missed[0].message == "missed: the daemon was down past the starting deadline (0 s)"
        assert (await engine.status("nightly")).health is Health.DEGRADED
        # The next run fails: the webhook hears of that too.
        await job.due(job.wall(), Trigger.SCHEDULE)
        failed = await wait_run(engine, "nightly", 4)
        assert failed.status is RunStatus.FAILED
        with trio.fail_after(30):
            await arrived.wait()
        nursery.cancel_scope.cancel()
    assert [r["event"] for r in received] == ["job_missed", "job_failed"]
    assert received[0]["run"] == 3
    assert received[0]["message"] == (
        "3 runs missed: the daemon was down past the starting deadline (0 s)"
    )
    assert received[1]["run"] == 4
    assert received[1]["health"] == "degraded"
    assert received[1]["message"] == "run 4 failed: exited with code 1"
