"""A real instance on a temporary data dir, as the engine's tests have it."""

from tests.engine.conftest import engine, http  # noqa: F401 (fixtures)
