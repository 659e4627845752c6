"""Durability: reopening keeps everything; a failed or killed write leaves nothing half-done."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from dployr.models import DeploymentStatus, DesiredState, EnvVar
from dployr.store import (
    KEY_ENV,
    SCHEMA_VERSION,
    Cipher,
    SchemaTooNew,
    Store,
    StoreError,
)
from dployr.store.schema import MIGRATIONS, Migration, migrate, schema_version
from tests.store.conftest import Clock, make_settings

KEY = bytes(range(32))


@pytest.fixture
def raw(db_path: Path, store: Store) -> Iterator[sqlite3.Connection]:
    """A second, independent connection to the store's database (the store is open)."""
    connection = sqlite3.connect(db_path, isolation_level=None)
    try:
        yield connection
    finally:
        connection.close()


def test_reopening_keeps_everything(db_path: Path, clock: Clock) -> None:
    with Store.open(db_path, cipher=Cipher(KEY), clock=clock) as store:
        store.create_service("web", make_settings(port=8080))
        store.set_desired("web", DesiredState.RUNNING)
        deployment = store.create_deployment("web", make_settings(port=8080))
        deployment = store.update_deployment(
            "web", deployment.id, status=DeploymentStatus.SUCCEEDED, revision="cafe123"
        )
        store.set_active_deployment("web", deployment.id)
        store.set_env("web", {"PLAIN": "1"})
        store.set_env("web", {"SECRET": "s"}, secret=True)
        process = store.record_process("web", deployment.id, 4242, 4242, 5.0, "tk")
        token = store.create_token("ci")
        store.set_meta("k", "v")
        instance = store.instance_id()
        services = store.list_services()
        tokens = store.list_tokens()

    with Store.open(db_path, cipher=Cipher(KEY), clock=clock) as store:
        assert store.list_services() == services
        assert services[0].desired is DesiredState.RUNNING
        assert services[0].active_deployment == deployment.id
        assert store.deployments("web") == [deployment]
        assert store.env("web") == [EnvVar("PLAIN", "1"), EnvVar("SECRET", "s", secret=True)]
        assert store.recorded_processes() == [process]
        assert store.verify_token(token)
        assert store.list_tokens() == tokens
        assert store.get_meta("k") == "v"
        assert store.instance_id() == instance


def test_the_database_is_configured_as_promised(db_path: Path, store: Store) -> None:
    store.create_service("web", make_settings())
    connection = sqlite3.connect(db_path)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert schema_version(connection) == SCHEMA_VERSION == len(MIGRATIONS)
    finally:
        connection.close()
    assert db_path.with_name("dployr.db-wal").exists()


def test_a_failure_inside_a_write_leaves_nothing_written(
    store: Store, raw: sqlite3.Connection, clock: Clock
) -> None:
    store.create_service("web", make_settings())
    store.set_env("web", {"OLD": "kept"})
    before = store.get_service("web")
    # A real failure half-way through the write: SQLite refuses the third row.
    raw.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON env WHEN NEW.key = 'C'"
        " BEGIN SELECT RAISE(ABORT, 'forced failure'); END"
    )
    clock.advance(1)
    with pytest.raises(StoreError, match="forced failure"):
        store.set_env("web", {"A": "1", "B": "2", "C": "3", "D": "4"})
    assert store.env("web") == [EnvVar("OLD", "kept")]
    assert store.get_service("web") == before
    # The store is still usable.
    raw.execute("DROP TRIGGER boom")
    store.set_env("web", {"A": "1"})
    assert [v.key for v in store.env("web")] == ["A", "OLD"]


def test_a_failure_inside_a_delete_leaves_the_service_whole(
    store: Store, raw: sqlite3.Connection
) -> None:
    store.create_service("web", make_settings())
    deployment = store.create_deployment("web", make_settings())
    store.set_env("web", {"A": "1"})
    store.record_process("web", deployment.id, 9, 9, 0.0, "t")
    raw.execute(
        "CREATE TRIGGER boom BEFORE DELETE ON processes"
        " BEGIN SELECT RAISE(ABORT, 'forced failure'); END"
    )
    with pytest.raises(StoreError, match="forced failure"):
        store.delete_service("web")
    assert store.get_service("web") is not None
    assert store.deployments("web") == [deployment]
    assert store.env("web") == [EnvVar("A", "1")]
    assert len(store.recorded_processes()) == 1


def test_a_failure_inside_fail_interrupted_deployments_changes_none(
    store: Store, raw: sqlite3.Connection
) -> None:
    store.create_service("web", make_settings())
    made = [store.create_deployment("web", make_settings()) for _ in range(3)]
    raw.execute(
        f"CREATE TRIGGER boom BEFORE UPDATE ON deployments WHEN OLD.id = {made[2].id}"
        " BEGIN SELECT RAISE(ABORT, 'forced failure'); END"
    )
    with pytest.raises(StoreError, match="forced failure"):
        store.fail_interrupted_deployments("crash")
    assert store.deployments("web") == made[::-1]


# The writer changes a batch of rows in each transaction, all to the same generation, and
# says so on stdout after each commit; it is killed with SIGKILL at some point.
WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from dployr.models import DeploymentStatus
    from dployr.store import Store
    from tests.store.conftest import make_settings

    keys = [f"K{i}" for i in range(20)]
    with Store.open(Path(sys.argv[1])) as store:
        store.create_service("web", make_settings())
        for generation in range(1_000_000):
            values = {key: str(generation) for key in keys}
            store.set_env("web", values, secret=bool(generation % 2))
            deployment = store.create_deployment("web", make_settings())
            store.update_deployment("web", deployment.id, status=DeploymentStatus.BUILDING)
            print(generation, flush=True)
    """
)


def test_kill_9_during_writes_leaves_a_consistent_database(tmp_path: Path) -> None:
    db_path = tmp_path / "dployr.db"
    root = Path(__file__).resolve().parents[2]
    environment = {**os.environ, KEY_ENV: KEY.hex(), "PYTHONPATH": str(root)}
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db_path)],
        stdout=subprocess.PIPE,
        env=environment,
        cwd=root,
        text=True,
    ) as writer:
        assert writer.stdout is not None
        last = -1
        while last < 50:
            line = writer.stdout.readline()
            assert line, f"the writer stopped early with code {writer.wait()}"
            last = int(line)
        writer.send_signal(signal.SIGKILL)
        assert writer.wait() == -signal.SIGKILL

    with Store.open(db_path, cipher=Cipher(KEY)) as store:
        values = {var.value for var in store.env("web")}
        assert len(store.env("web")) == 20
        assert len(values) == 1  # every key from the same transaction
        (generation,) = values
        assert int(generation) >= last
        deployments = store.deployments("web", limit=1_000_000)
        assert len(deployments) >= last + 1
        assert {d.status for d in deployments} <= {
            DeploymentStatus.PENDING,
            DeploymentStatus.BUILDING,
        }
        interrupted = store.fail_interrupted_deployments("the daemon was killed")
        assert len(interrupted) == len(deployments)


def test_a_database_from_a_newer_dployr_is_refused(db_path: Path, cipher: Cipher) -> None:
    Store.open(db_path, cipher=cipher).close()
    connection = sqlite3.connect(db_path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(SchemaTooNew, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade"):
        Store.open(db_path, cipher=cipher)


def test_a_file_that_is_not_a_database_is_refused(db_path: Path, cipher: Cipher) -> None:
    db_path.write_bytes(b"this is not a database, " * 100)
    with pytest.raises(StoreError, match=f"cannot open the database {db_path}"):
        Store.open(db_path, cipher=cipher)


def test_a_later_migration_applies_once_and_a_failed_one_changes_nothing(
    db_path: Path, cipher: Cipher
) -> None:
    Store.open(db_path, cipher=cipher).close()
    added = Migration("metrics", ("CREATE TABLE samples (at REAL NOT NULL) STRICT",))
    broken = Migration("broken", ("CREATE TABLE other (x INTEGER)", "NOT SQL AT ALL"))
    connection = sqlite3.connect(db_path, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError):
            migrate(connection, db_path, (*MIGRATIONS, added, broken))
        assert schema_version(connection) == len(MIGRATIONS)
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        assert "samples" not in tables
        assert "other" not in tables

        assert migrate(connection, db_path, (*MIGRATIONS, added)) == len(MIGRATIONS)
        assert migrate(connection, db_path, (*MIGRATIONS, added)) == len(MIGRATIONS) + 1
        assert schema_version(connection) == len(MIGRATIONS) + 1
        connection.execute("INSERT INTO samples VALUES (1.5)")
    finally:
        connection.close()
