"""Fixtures for the store tests: real SQLite files in ``tmp_path`` and a clock we move."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from dployr.models import ServiceSettings, Source
from dployr.store import Cipher, Store


@attrs.define
class Clock:
    """A wall clock that only moves when a test says so."""

    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cipher() -> Cipher:
    return Cipher.generate()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "dployr.db"


@pytest.fixture
def store(db_path: Path, cipher: Cipher, clock: Clock) -> Iterator[Store]:
    with Store.open(db_path, cipher=cipher, clock=clock) as opened:
        yield opened


def make_settings(**changes: Any) -> ServiceSettings:
    """Valid settings for a small web service, with ``changes`` applied."""
    settings = ServiceSettings(
        source=Source("https://example.com/app.git", branch="main"),
        run_cmd="python -m http.server $PORT",
        build_cmd="pip install -r requirements.txt",
        port=8000,
    )
    return attrs.evolve(settings, **changes)
