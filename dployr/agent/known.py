"""The control planes an agent was last told of, kept for its next start.

``control-planes.json`` in the agent's data dir holds the URLs of every control plane of
the cluster, as the last ``hello_ack`` or ``control_planes`` frame listed them. At start
the agent dials the URL it joined; if that fails, it dials these too, so that a control
plane gone for good (the one it joined through) does not cut it off from the others.
It is a cache: a file that cannot be read is taken as empty, and written again.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

FILE_NAME = "control-planes.json"

log = logging.getLogger("dployr.agent")


def load(data_dir: Path) -> tuple[str, ...]:
    """The control plane URLs kept in ``data_dir`` (none if there are none)."""
    path = data_dir / FILE_NAME
    try:
        data: Any = json.loads(path.read_text())
    except FileNotFoundError:
        return ()
    except (OSError, ValueError) as error:
        log.warning("ignored %s: %s", path, error)
        return ()
    if not isinstance(data, list) or not all(isinstance(url, str) for url in data):
        log.warning("ignored %s: not a list of URLs", path)
        return ()
    return tuple(data)


def save(data_dir: Path, urls: tuple[str, ...]) -> None:
    """Keep ``urls`` (mode 0600, written whole or not at all); a failure is logged: the
    agent runs on without it."""
    partial = data_dir / f".{FILE_NAME}.new"
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump(list(urls), file)
        partial.replace(data_dir / FILE_NAME)
    except OSError as error:
        log.warning("could not keep the control planes' URLs in %s: %s", data_dir, error)
