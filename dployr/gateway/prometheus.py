"""The latest metrics samples in Prometheus' text exposition format, for ``GET /metrics``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from dployr.metrics import InstanceSample, ServiceSample

_SERVICE_SERIES: Final = (
    ("cpu_percent", "CPU used since the previous sample, in percent of one core."),
    ("memory_rss_bytes", "Resident memory of the service's processes."),
    ("processes", "Processes of the service's live releases."),
    ("threads", "Threads of the service's processes."),
    ("open_fds", "Open file descriptors of the service's processes."),
)
_INSTANCE_SERIES: Final = (
    ("cpu_percent", "CPU used since the previous sample, in percent of the whole machine."),
    ("memory_used_bytes", "Memory in use: the total less what is available."),
    ("memory_total_bytes", "Memory of the machine."),
    ("load1", "Load average over 1 minute."),
    ("load5", "Load average over 5 minutes."),
    ("load15", "Load average over 15 minutes."),
    ("cpus", "Logical CPUs of the machine."),
)


def _label(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def prometheus_text(
    instance: str,
    services: Iterable[ServiceSample],
    machine: InstanceSample | None,
    placed: Mapping[str, str] | None = None,
) -> str:
    """The latest samples in Prometheus' text exposition format (version 0.0.4).

    Gauges named ``dployr_service_<field>`` labelled by service and instance (the one
    ``placed`` names for the service, in a cluster; else ``instance``), and
    ``dployr_instance_<field>`` labelled by instance; no timestamps (the scrape's own).
    """
    where = _label(instance)
    placed = placed or {}
    lines: list[str] = []
    samples = sorted(services, key=lambda sample: sample.service)
    labels = {
        s.service: _label(placed[s.service]) if s.service in placed else where for s in samples
    }
    for field, help_text in _SERVICE_SERIES:
        name = f"dployr_service_{field}"
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [
            f"{name}{{service={_label(s.service)},instance={labels[s.service]}}} "
            f"{getattr(s, field)!r}"
            for s in samples
        ]
    if machine is not None:
        values = {
            "cpu_percent": machine.cpu_percent,
            "memory_used_bytes": machine.memory_used_bytes,
            "memory_total_bytes": machine.memory_total_bytes,
            "load1": machine.load[0],
            "load5": machine.load[1],
            "load15": machine.load[2],
            "cpus": machine.cpu_count,
        }
        for field, help_text in _INSTANCE_SERIES:
            name = f"dployr_instance_{field}"
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
            lines.append(f"{name}{{instance={where}}} {values[field]!r}")
    return "\n".join(lines) + "\n"


def disk_text(instance: str, *, disk_full: bool, log_lines_dropped: int) -> str:
    """The data dir's disk condition, in the same format."""
    where = _label(instance)
    return (
        "# HELP dployr_disk_full 1 while the data dir's disk is full (log history paused)\n"
        "# TYPE dployr_disk_full gauge\n"
        f"dployr_disk_full{{instance={where}}} {int(disk_full)}\n"
        "# HELP dployr_log_lines_dropped_total Log lines not written to history (disk full)\n"
        "# TYPE dployr_log_lines_dropped_total counter\n"
        f"dployr_log_lines_dropped_total{{instance={where}}} {log_lines_dropped}\n"
    )
