"""Scheduled jobs: a service of type ``job`` runs its command on a schedule or when asked.

- :mod:`.scheduler` the ``scheduler`` child: sleeps until the next due time;
- :mod:`.run` one run's process (``run-<n>``): launch, output, timeout ladder;
- :mod:`.runner` the job's runs: the rules of :mod:`dployr.schedule` applied, the records
  (:mod:`dployr.store.jobs`), status and health;
- :mod:`.gate` the instance's start gate: the runs due at one instant recorded in one
  transaction and let go by one wake-up;
- the requests about jobs are the protocol's (:mod:`dployr.protocol.messages`): ``GetJob``,
  ``ListRuns``, ``RunJob``, ``ReadRunLogs``; :func:`routes` serves them.

The pure rules (schedules, catch-up, concurrency) are in :mod:`dployr.schedule`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from dployr.engine.errors import Conflict
from dployr.engine.jobs.runner import JobRunner, is_job
from dployr.protocol import messages

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from dployr.engine.service.rolling import ServiceRollouts as Service

__all__ = ["JobRunner", "is_job", "routes", "runner_of"]


def runner_of(service: Service) -> JobRunner:
    """The service's job runner, made the first time it is needed."""
    if service.job is None:
        service.job = JobRunner(service)
    return service.job


async def _now(value: Any) -> Any:
    return value


class Services(Protocol):
    """What the routes need of an instance: its services by name."""

    def service(self, name: str) -> Any: ...


def routes(instance: Services) -> dict[type[Any], Callable[[Any], Awaitable[Any]]]:
    """The instance handle's routes for the protocol's requests about jobs."""

    def job(name: str) -> JobRunner:
        service = instance.service(name)
        if not is_job(service.settings_view().settings):
            raise Conflict(f"{name} is not a job (its type is not job)")
        return runner_of(service)

    return {
        messages.GetJob: lambda r: _now(job(r.name).info(r.limit)),
        messages.ListRuns: lambda r: _now(job(r.name).runs(r.limit)),
        messages.RunJob: lambda r: job(r.name).run_now(),
        messages.ReadRunLogs: lambda r: job(r.name).read_run_logs(r.run, r.after, r.limit),
    }
