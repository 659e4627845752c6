"""The database schema, as a list of migrations numbered by ``PRAGMA user_version``.

Migration *n* (counting from 1) takes a database from version *n - 1* to *n*. A database is
brought up to date when it is opened, with every pending migration and the new version number
written in one transaction, so a crash during a migration leaves the old schema intact. To
change the schema, append a :class:`Migration`; never edit one that has shipped.

Tables are ``STRICT``, so a value of the wrong type is refused by SQLite itself. Domain
values that are records (settings, output lines) are stored as JSON written by the one
converter in :mod:`dployr.serde`; enumerations are stored as their value strings.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import attrs

from dployr.store.errors import SchemaTooNew


@attrs.frozen
class Migration:
    """One step of the schema: SQL statements run in order, in the migration transaction."""

    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "services, environment, deployments, process groups, API tokens, meta",
        (
            """
            CREATE TABLE meta (
                key TEXT PRIMARY KEY NOT NULL,
                value TEXT NOT NULL
            ) STRICT, WITHOUT ROWID
            """,
            """
            CREATE TABLE services (
                name TEXT PRIMARY KEY NOT NULL,
                settings TEXT NOT NULL,  -- ServiceSettings as JSON
                desired TEXT NOT NULL,  -- DesiredState value
                active_deployment INTEGER REFERENCES deployments (id),
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL
            ) STRICT
            """,
            # AUTOINCREMENT: ids are never reused, even after the newest rows are deleted.
            """
            CREATE TABLE deployments (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                service TEXT NOT NULL REFERENCES services (name) ON DELETE CASCADE,
                status TEXT NOT NULL,  -- DeploymentStatus value
                settings TEXT NOT NULL,  -- ServiceSettings as JSON, as deployed
                created_at REAL NOT NULL,
                revision TEXT,
                finished_at REAL,  -- set exactly when the status is a finished one
                exit_code INTEGER,
                error TEXT,
                output_tail TEXT NOT NULL DEFAULT '[]'  -- JSON list of lines
            ) STRICT
            """,
            "CREATE INDEX deployments_of_service ON deployments (service, id)",
            "CREATE INDEX unfinished_deployments ON deployments (id) WHERE finished_at IS NULL",
            # A plain variable has a value; a secret has only its sealed value.
            """
            CREATE TABLE env (
                service TEXT NOT NULL REFERENCES services (name) ON DELETE CASCADE,
                key TEXT NOT NULL,
                value TEXT,
                sealed BLOB,  -- AES-256-GCM, see dployr.store.secrets
                PRIMARY KEY (service, key),
                CHECK ((value IS NULL) <> (sealed IS NULL))
            ) STRICT, WITHOUT ROWID
            """,
            """
            CREATE TABLE processes (
                pid INTEGER PRIMARY KEY,
                service TEXT NOT NULL REFERENCES services (name) ON DELETE CASCADE,
                deployment INTEGER NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
                pgid INTEGER NOT NULL,
                started_at REAL NOT NULL,
                token TEXT NOT NULL
            ) STRICT
            """,
            "CREATE INDEX processes_of_service ON processes (service)",
            "CREATE INDEX processes_of_deployment ON processes (deployment)",
            """
            CREATE TABLE api_tokens (
                name TEXT PRIMARY KEY NOT NULL,
                sha256 BLOB NOT NULL UNIQUE,  -- of the token; the token itself is not kept
                created_at REAL NOT NULL
            ) STRICT
            """,
        ),
    ),
    Migration(
        "metrics history: samples for an hour, minute buckets for 7 days",
        (
            # Every sample, kept for an hour (dployr.metrics.RAW_RETENTION).
            """
            CREATE TABLE service_samples (
                service TEXT NOT NULL REFERENCES services (name) ON DELETE CASCADE,
                ts REAL NOT NULL,  -- Unix time
                cpu REAL NOT NULL,  -- percent of one core
                rss INTEGER NOT NULL,  -- bytes
                processes INTEGER NOT NULL,
                threads INTEGER NOT NULL,
                fds INTEGER NOT NULL,
                PRIMARY KEY (service, ts)
            ) STRICT, WITHOUT ROWID
            """,
            "CREATE INDEX service_samples_by_time ON service_samples (ts)",
            # One row per service and minute, kept for 7 days: the count of the minute's
            # samples and the sum and maximum of each field, added to as samples arrive.
            """
            CREATE TABLE service_minutes (
                service TEXT NOT NULL REFERENCES services (name) ON DELETE CASCADE,
                minute INTEGER NOT NULL,  -- its start, Unix time, a multiple of 60
                samples INTEGER NOT NULL,
                cpu_sum REAL NOT NULL,
                cpu_max REAL NOT NULL,
                rss_sum INTEGER NOT NULL,
                rss_max INTEGER NOT NULL,
                processes_sum INTEGER NOT NULL,
                processes_max INTEGER NOT NULL,
                threads_sum INTEGER NOT NULL,
                threads_max INTEGER NOT NULL,
                fds_sum INTEGER NOT NULL,
                fds_max INTEGER NOT NULL,
                PRIMARY KEY (service, minute)
            ) STRICT, WITHOUT ROWID
            """,
            "CREATE INDEX service_minutes_by_time ON service_minutes (minute)",
            """
            CREATE TABLE instance_samples (
                ts REAL PRIMARY KEY NOT NULL,  -- Unix time
                cpu REAL NOT NULL,  -- percent of the whole machine
                mem_used INTEGER NOT NULL,  -- bytes
                mem_total INTEGER NOT NULL,
                load1 REAL NOT NULL,
                load5 REAL NOT NULL,
                load15 REAL NOT NULL
            ) STRICT, WITHOUT ROWID
            """,
            """
            CREATE TABLE instance_minutes (
                minute INTEGER PRIMARY KEY NOT NULL,
                samples INTEGER NOT NULL,
                cpu_sum REAL NOT NULL,
                cpu_max REAL NOT NULL,
                mem_used_sum INTEGER NOT NULL,
                mem_used_max INTEGER NOT NULL,
                mem_total_sum INTEGER NOT NULL,
                mem_total_max INTEGER NOT NULL,
                load1_sum REAL NOT NULL,
                load1_max REAL NOT NULL,
                load5_sum REAL NOT NULL,
                load5_max REAL NOT NULL,
                load15_sum REAL NOT NULL,
                load15_max REAL NOT NULL
            ) STRICT, WITHOUT ROWID
            """,
        ),
    ),
    Migration(
        "deployment numbers per service, rollbacks as deployments, a deploy's own variables",
        (
            # Each service numbers its deployments 1, 2, 3 ...; rows written before keep
            # their global id as their number (so their log lines and release folders, named
            # by it, still match), and a service's numbers go on from its highest.
            "ALTER TABLE deployments ADD COLUMN number INTEGER",
            "UPDATE deployments SET number = id",
            "CREATE UNIQUE INDEX deployments_by_number ON deployments (service, number)",
            # A rollback is a deployment of its own that runs an earlier one's release folder.
            "ALTER TABLE deployments ADD COLUMN rollback_of INTEGER",
            "ALTER TABLE deployments ADD COLUMN release INTEGER",
            "UPDATE deployments SET release = number",
            # The variables a deploy brings: they reach its release, and join the service's
            # environment only if the deploy succeeds.
            """
            CREATE TABLE deployment_env (
                deployment INTEGER NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
                key TEXT NOT NULL,
                value TEXT,
                sealed BLOB,  -- sealed for (service, key), as in env
                PRIMARY KEY (deployment, key),
                CHECK ((value IS NULL) <> (sealed IS NULL))
            ) STRICT, WITHOUT ROWID
            """,
            # --commit pins one deploy; an older dployr saved it in the settings.
            "UPDATE services SET settings = json_set(settings, '$.source.commit', NULL)",
        ),
    ),
    Migration(
        "git credentials: the password of a service's remote, sealed, apart from its URL",
        (
            # The settings hold the remote with its password shown as ***; the password is
            # here, sealed like a secret and bound to the service and that shown remote.
            """
            CREATE TABLE git_credentials (
                service TEXT PRIMARY KEY NOT NULL REFERENCES services (name) ON DELETE CASCADE,
                remote TEXT NOT NULL,  -- the remote as stored in the settings (password ***)
                sealed BLOB NOT NULL  -- AES-256-GCM, see dployr.store.secrets
            ) STRICT, WITHOUT ROWID
            """,
        ),
    ),
    Migration(
        "scoped, expiring API tokens; revoked dashboard sessions; the audit log",
        (
            "ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'admin'"
            " CHECK (scope IN ('read', 'deploy', 'admin'))",
            # No foreign key: a token may name a service its first deploy will create.
            "ALTER TABLE api_tokens ADD COLUMN service TEXT",
            "ALTER TABLE api_tokens ADD COLUMN expires_at REAL",  # Unix time; NULL: never
            "ALTER TABLE api_tokens ADD COLUMN last_used_at REAL",
            # Logged-out session ids, kept until the session would have expired anyway.
            """
            CREATE TABLE revoked_sessions (
                id TEXT PRIMARY KEY NOT NULL,
                until REAL NOT NULL
            ) STRICT, WITHOUT ROWID
            """,
            # No foreign keys: the record outlives the service and the token it names.
            """
            CREATE TABLE audit (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                at REAL NOT NULL,
                token TEXT,
                method TEXT NOT NULL,
                path TEXT NOT NULL,
                service TEXT,
                status INTEGER NOT NULL
            ) STRICT
            """,
            "CREATE INDEX audit_of_service ON audit (service, id)",
        ),
    ),
    Migration(
        "the runs of scheduled jobs, and since when each job's schedule applies",
        (
            """
            CREATE TABLE job_runs (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                service TEXT NOT NULL REFERENCES services (name) ON DELETE CASCADE,
                number INTEGER NOT NULL,  -- per service: 1, 2, 3 ...
                deployment INTEGER NOT NULL,  -- the deployment number whose release it runs
                trigger TEXT NOT NULL,  -- Trigger value
                status TEXT NOT NULL,  -- RunStatus value
                scheduled_at REAL,  -- the due time; NULL for a manual run
                started_at REAL,
                ended_at REAL,
                exit_code INTEGER,
                signal INTEGER,
                message TEXT NOT NULL DEFAULT '',
                pid INTEGER,
                first_cursor INTEGER,
                last_cursor INTEGER,
                output TEXT,  -- JSON [[first, last], ...]: the cursors of its log lines
                UNIQUE (service, number)
            ) STRICT
            """,
            "CREATE INDEX job_runs_due ON job_runs (service, scheduled_at)",
            "CREATE INDEX job_runs_status ON job_runs (status)",
            """
            CREATE TABLE job_schedules (
                service TEXT PRIMARY KEY NOT NULL REFERENCES services (name) ON DELETE CASCADE,
                since REAL NOT NULL  -- due times after this are the job's to run
            ) STRICT
            """,
        ),
    ),
    Migration(
        "the container image a deployment runs, pinned (dployr.engine.podman)",
        (
            # A registry image as repository@sha256:digest, or a local image's id: what a
            # rollback, a restart and a daemon restart run, even after the tag moved.
            "ALTER TABLE deployments ADD COLUMN image TEXT",
        ),
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)
"""The schema version this dployr writes."""


def schema_version(db: sqlite3.Connection) -> int:
    """The schema version of an open database (0 for a new, empty one)."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    return int(version)


def migrate(
    db: sqlite3.Connection, path: Path, migrations: tuple[Migration, ...] = MIGRATIONS
) -> int:
    """Bring the database up to ``len(migrations)`` in one transaction; return the old version.

    ``db`` must be in autocommit mode (``isolation_level=None``) and outside a transaction.
    Raises :class:`SchemaTooNew` if a newer dployr wrote the database.
    """
    db.execute("BEGIN IMMEDIATE")  # the version is read under the write lock
    try:
        version = _known_version(db, path, len(migrations))
        for migration in migrations[version:]:
            for statement in migration.statements:
                db.execute(statement)
        if version < len(migrations):
            db.execute(f"PRAGMA user_version = {len(migrations):d}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return version


def _known_version(db: sqlite3.Connection, path: Path, known: int) -> int:
    version = schema_version(db)
    if version > known:
        raise SchemaTooNew(
            f"the database {path} has schema version {version}, but this dployr knows "
            f"only up to {known}: upgrade dployr to use it"
        )
    return version
