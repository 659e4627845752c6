"""A real ``dployr up`` for each attack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers import Daemon


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    daemon = Daemon(tmp_path / "data")
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()
