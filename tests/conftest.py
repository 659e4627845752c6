"""Guards shared by every test, and the order the suite runs in."""

from __future__ import annotations

import compileall
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from hypothesis import settings
from playwright.sync_api import Browser, Playwright, sync_playwright

from tests.dashboard.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.helpers import service_processes

# Property tests are judged on what they find, not on how fast one example ran: on a loaded
# 2-core machine an example can take far longer than Hypothesis's 200 ms default deadline.
settings.register_profile("dployr", deadline=None)
settings.load_profile("dployr")


@pytest.fixture(autouse=True)
def no_leftover_service_processes() -> Iterator[None]:
    """Fail a test that leaves a service's process (or its children) running behind it."""
    before = set(service_processes())
    yield
    leftovers = {pid: owner for pid, owner in service_processes().items() if pid not in before}
    for pid in leftovers:
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            continue
    assert not leftovers, f"the test left service processes running: {leftovers}"


# One Playwright driver and one chromium per test process, for the browser tests of every
# folder: a second sync_playwright() in a process fails (its event loop is running already).
@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    try:
        yield browser
    finally:
        browser.close()


# The longest tests first. `make test` hands tests to its workers one at a time (xdist's
# --maxschedchunk 1), so a long test that started last would be the run's tail while the
# other workers idle. Each run records how long each test took (set-up, call and tear-down)
# in pytest's cache; the next run orders by it. A test never timed here counts as
# SLOW_GUESS seconds if it is marked slow, else as none.
DURATIONS = "dployr/durations"
SLOW_GUESS = 10.0


class _Timer:
    """Seconds each test took in this run (under xdist, in the controlling process, which
    gets every worker's reports)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.times[report.nodeid] = self.times.get(report.nodeid, 0.0) + report.duration


_TIMER = pytest.StashKey[_Timer]()


def _known(config: pytest.Config) -> dict[str, float]:
    cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
    known = cache.get(DURATIONS, {}) if cache is not None else {}
    return known if isinstance(known, dict) else {}


def pytest_configure(config: pytest.Config) -> None:
    timer = config.stash[_TIMER] = _Timer()
    config.pluginmanager.register(timer, "dployr-durations")
    if not hasattr(config, "workerinput"):  # once, in the controlling process
        _compile_the_package()
    # Each test process rewrites the test modules' asserts, and compiles them: keep that
    # (in tests/**/__pycache__, as pytest does unless told not to) for the next run.
    sys.dont_write_bytecode = False


def _compile_the_package() -> None:
    """Write dployr's bytecode before the tests start its processes.

    The suite starts hundreds of daemons, agents and CLI runs, each importing the package:
    where PYTHONDONTWRITEBYTECODE is set, none writes the bytecode it compiled, so each
    compiled every module again (a quarter of a daemon's start-up CPU, a tenth of a CLI
    run's). compileall writes it regardless; every process reads it. Up to date, this is
    a look at each file's time stamp."""
    with contextlib.suppress(OSError):  # a tree it may not write to: each compiles its own
        compileall.compile_dir(Path(__file__).resolve().parent.parent / "dployr", quiet=1)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    known = _known(config)

    def expected(item: pytest.Item) -> float:
        if item.nodeid in known:
            return float(known[item.nodeid])
        return SLOW_GUESS if item.get_closest_marker("slow") else 0.0

    items.sort(key=expected, reverse=True)  # stable: ties keep their file order


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    cache = getattr(config, "cache", None)
    if cache is None or hasattr(config, "workerinput"):
        return  # a worker's reports reach the controlling process, which records them
    times = config.stash[_TIMER].times
    if times:
        cache.set(DURATIONS, {**_known(config), **times})
