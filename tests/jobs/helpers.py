"""Helpers for jobs on a real instance (real processes, real folders)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import trio

from dployr.engine.jobs import runner_of
from dployr.engine.jobs.runner import JobRunner
from dployr.models import RestartPolicy, ServiceSettings, Source
from dployr.protocol.messages import ListRuns
from dployr.schedule import JobOptions, JobRun, RunStatus
from tests.engine.conftest import WAIT, Engine


def job_folder(path: Path, script: str) -> Path:
    """A folder holding ``job.sh``."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "job.sh").write_text(script)
    return path


def job_settings(
    folder: Path, options: JobOptions | None = None, **kwargs: object
) -> ServiceSettings:
    kwargs.setdefault("stop_grace", 1.0)
    return ServiceSettings(
        source=Source(str(folder)),
        run_cmd="sh job.sh",
        job=options or JobOptions(),
        restart=RestartPolicy(min_uptime=0.3),
        **kwargs,  # type: ignore[arg-type]
    )


def runner(engine: Engine, name: str) -> JobRunner:
    return runner_of(engine.instance.services[name])


def runs(engine: Engine, name: str) -> dict[int, JobRun]:
    return {run.id: run for run in engine.instance.store.job_runs(name, 100)}


async def wait_run(engine: Engine, name: str, number: int, *statuses: RunStatus) -> JobRun:
    """Wait until run ``number`` has one of ``statuses`` (any finished one by default),
    asking the handle for the job's runs again at every change the instance publishes."""

    def there(run: JobRun | None) -> bool:
        if run is None:
            return False
        return run.status in statuses if statuses else run.status.finished

    with engine.handle.subscribe_changes() as changes, trio.fail_after(WAIT):
        async with contextlib.aclosing(aiter(changes)) as entries:
            while True:
                listed = await engine.handle.request(ListRuns(name, 1000))
                run = next((r for r in listed if r.id == number), None)
                if there(run):
                    assert run is not None
                    return run
                await anext(entries)
