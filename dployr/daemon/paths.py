"""Where a daemon keeps its data, and how the CLI finds a running daemon from it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import attrs

from dployr.errors import DployrError


class NotRunning(DployrError):
    """No daemon runs on the data dir."""


ROOT_DATA_DIR = Path("/var/lib/dployr")
"""The default data dir of a daemon run as root: its services, each a user of its own,
must be able to reach their folders in it (root's home is closed to them)."""


def default_data_dir() -> Path:
    """``$DPLOYR_HOME``, else ``/var/lib/dployr`` for root, else ``~/.local/share/dployr``."""
    home = os.environ.get("DPLOYR_HOME")
    if home:
        return Path(home).expanduser()
    if os.geteuid() == 0:
        return ROOT_DATA_DIR
    return Path.home() / ".local" / "share" / "dployr"


@attrs.frozen
class DataDir:
    """The files of one data dir."""

    root: Path

    @property
    def db(self) -> Path:
        """The SQLite database."""
        return self.root / "dployr.db"

    @property
    def admin_token(self) -> Path:
        """The admin API token (mode 0600); the database keeps only its hash."""
        return self.root / "admin-token"

    @property
    def dashboard_key(self) -> Path:
        """The key of the dashboard's sessions (32 random bytes, mode 0600)."""
        return self.root / "dashboard-key"

    @property
    def lock(self) -> Path:
        """Held by the running daemon, so a second one refuses to start."""
        return self.root / "daemon.lock"

    @property
    def endpoint(self) -> Path:
        """Where the running daemon writes its URL for the CLI."""
        return self.root / "daemon.json"

    def read_endpoint(self) -> tuple[str, str, str | None]:
        """The running daemon's URL, the admin token, and the certificate it serves (None
        over http), or NotRunning."""
        try:
            endpoint = json.loads(self.endpoint.read_text())
            url, cert = endpoint["url"], endpoint.get("tls_cert")
            token = self.admin_token.read_text().strip()
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise NotRunning(
                f"no dployr daemon is running on {self.root}: start one with `dployr up`"
            ) from None
        return str(url), token, None if cert is None else str(cert)
