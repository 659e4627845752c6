"""Prometheus' text exposition format of the latest samples and of the disk condition."""

from __future__ import annotations

from dployr.gateway.prometheus import disk_text, prometheus_text
from dployr.metrics import InstanceSample, ServiceSample
from tests.metrics.strategies import T0


def test_the_latest_samples_in_prometheus_text_format() -> None:
    text = prometheus_text(
        'lo"cal',
        [
            ServiceSample("web", T0, 12.5, 2048, 2, 5, 9),
            ServiceSample("api", T0, 0.0, 1024, 1, 1, 4),
        ],
        InstanceSample(T0, 37.25, 1000, 4000, (0.5, 0.25, 0.125), cpu_count=2),
    )
    lines = text.splitlines()
    assert text.endswith("\n")
    assert lines[:4] == [
        "# HELP dployr_service_cpu_percent CPU used since the previous sample, in percent of"
        " one core.",
        "# TYPE dployr_service_cpu_percent gauge",
        'dployr_service_cpu_percent{service="api",instance="lo\\"cal"} 0.0',
        'dployr_service_cpu_percent{service="web",instance="lo\\"cal"} 12.5',
    ]
    assert 'dployr_service_memory_rss_bytes{service="web",instance="lo\\"cal"} 2048' in lines
    assert 'dployr_service_open_fds{service="api",instance="lo\\"cal"} 4' in lines
    assert 'dployr_instance_load15{instance="lo\\"cal"} 0.125' in lines
    assert 'dployr_instance_cpus{instance="lo\\"cal"} 2' in lines
    families = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(families) == len(set(families)) == 5 + 7


def test_prometheus_text_before_the_first_round() -> None:
    text = prometheus_text("local", [], None)
    assert [line for line in text.splitlines() if not line.startswith("#")] == []


def test_the_disk_condition_in_prometheus_text_format() -> None:
    text = disk_text('lo"cal', disk_full=True, log_lines_dropped=12)
    assert text.endswith("\n")
    lines = text.splitlines()
    assert "# TYPE dployr_disk_full gauge" in lines
    assert 'dployr_disk_full{instance="lo\\"cal"} 1' in lines
    assert "# TYPE dployr_log_lines_dropped_total counter" in lines
    assert 'dployr_log_lines_dropped_total{instance="lo\\"cal"} 12' in lines
