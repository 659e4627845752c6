"""The metrics history as the store reads and writes it (its SQL: :mod:`dployr.store.metrics`)."""

from __future__ import annotations

from collections.abc import Iterable

from dployr.metrics import InstancePoint, MetricPoint, Resolution, Sample
from dployr.store import metrics as metrics_sql
from dployr.store.base import StoreBase


class MetricTables(StoreBase):
    """Samples of CPU and memory, kept at three resolutions."""

    # -- metrics history -------------------------------------------------------------------

    def record_samples(self, samples: Iterable[Sample]) -> int:
        """Record a round of samples in one transaction; return how many were new.

        Each sample is kept as it is for an hour and added to its minute's bucket (count,
        sums, maxima), kept for 7 days; data older than that is deleted in the same
        transaction. Recording a sample twice changes nothing. A sample older than an hour,
        or of a service that no longer exists, is skipped.
        """
        batch = list(samples)
        now = self._clock()
        with self._write() as db:
            return metrics_sql.record(db, batch, now)

    def metrics(
        self,
        name: str,
        since: float,
        until: float | None = None,
        *,
        resolution: Resolution | None = None,
    ) -> list[MetricPoint]:
        """A service's history from ``since`` to ``until`` (Unix seconds; None: no end), by time.

        If the range starts within the last hour, every sample with ``since <= ts < until``
        is a point (``Resolution.RAW``). If it starts earlier, the whole range, last hour
        included, is read in minutes: one point per minute whose start is in
        ``[minute of since, until)``, with the means and maxima of its samples
        (``Resolution.MINUTE``; the current minute holds the samples recorded so far).
        ``resolution`` forces one or the other (raw samples exist for the last hour only).
        Raises :class:`UnknownService` for a service that does not exist.
        """
        metrics_sql.check_range(since, until)
        now = self._clock()
        with self._read() as db:
            self._require_service(db, name)
            return metrics_sql.service_points(
                db, name, since=since, until=until, resolution=resolution, now=now
            )

    def instance_metrics(
        self,
        since: float,
        until: float | None = None,
        *,
        resolution: Resolution | None = None,
    ) -> list[InstancePoint]:
        """The instance's history from ``since`` to ``until``, read as :meth:`metrics` is."""
        metrics_sql.check_range(since, until)
        now = self._clock()
        with self._read() as db:
            return metrics_sql.instance_points(
                db, since=since, until=until, resolution=resolution, now=now
            )
