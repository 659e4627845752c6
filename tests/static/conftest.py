"""The real daemon and CLI of tests/cli, for the tests of service types and static sites."""

from tests.cli.conftest import daemon, worker_folder

__all__ = ["daemon", "worker_folder"]
