"""Run every benchmark, or those named: ``python -m benchmarks [name ...]``."""

from __future__ import annotations

import importlib
import platform
import sys

import psutil

SUITES = [
    "supervision",
    "logs_history",
    "engine",
    "metrics_sampler",
    "api",
    "proxy",
    "static",
    "static_reload",
    "jobs",
    "images",
    "cluster_fleet",
    "cluster_deploy",
    "cluster_logs",
    "cluster_restart",
]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    cores = psutil.cpu_count(logical=True)
    memory = psutil.virtual_memory().total / 2**30
    return f"{cpu}, {cores} cores, {memory:.0f} GiB, Python {platform.python_version()}"


def main() -> None:
    names = sys.argv[1:] or SUITES
    print(f"machine: {machine()}")
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        module.main()


if __name__ == "__main__":
    main()
