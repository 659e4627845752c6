"""The cluster state's schema, one tuple of migrations per backend.

Migration *n* (counting from 1) takes a database from version *n - 1* to *n*; pending ones
run when the state is opened, all in one transaction with the new version number. To change
the schema, append a :class:`~dployr.store.schema.Migration` to BOTH tuples (the two
databases must keep the same tables, since :mod:`dployr.store.cluster.tables` speaks to
either); never edit one that has shipped.

The cluster state lives apart from the instance's own store (``dployr.db``): in
``cluster.db`` beside it, or in a PostgreSQL database that several control planes share.
SQLite keeps its version in ``PRAGMA user_version``; PostgreSQL in the one-row table
``dployr_schema``.
"""

from __future__ import annotations

from dployr.store.schema import Migration

SQLITE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "instances, join tokens, agent credentials, placement, last-known snapshots",
        (
            """
            CREATE TABLE instances (
                name TEXT PRIMARY KEY NOT NULL,
                created_at REAL NOT NULL,
                joined_at REAL,
                address TEXT,
                version TEXT,
                last_seen REAL,
                machine TEXT  -- JSON object
            ) STRICT
            """,
            # Secrets are kept only as their SHA-256 digests.
            """
            CREATE TABLE join_tokens (
                sha256 BLOB PRIMARY KEY NOT NULL,
                instance TEXT NOT NULL REFERENCES instances (name) ON DELETE CASCADE,
                created_at REAL NOT NULL,
                expires_at REAL NOT NULL,
                used_at REAL
            ) STRICT
            """,
            "CREATE INDEX join_tokens_of_instance ON join_tokens (instance)",
            """
            CREATE TABLE credentials (
                sha256 BLOB PRIMARY KEY NOT NULL,
                instance TEXT NOT NULL UNIQUE REFERENCES instances (name) ON DELETE CASCADE,
                created_at REAL NOT NULL
            ) STRICT
            """,
            # The instance is 'local' or a row of instances (checked by the code, since
            # 'local' has no row).
            """
            CREATE TABLE placement (
                service TEXT PRIMARY KEY NOT NULL,
                instance TEXT NOT NULL
            ) STRICT
            """,
            "CREATE INDEX placement_of_instance ON placement (instance)",
            """
            CREATE TABLE snapshots (
                instance TEXT PRIMARY KEY NOT NULL,
                at REAL NOT NULL,
                services TEXT NOT NULL  -- JSON list of services (codec JSON)
            ) STRICT
            """,
        ),
    ),
    Migration(
        "control planes: each dployr up sharing the state, and the URL agents reach it at",
        (
            # One row per running control plane (a new id at each start); the leader
            # deletes those not seen for a while (killed, so never gone on their own).
            """
            CREATE TABLE control_planes (
                id TEXT PRIMARY KEY NOT NULL,
                url TEXT NOT NULL,
                started_at REAL NOT NULL,
                last_seen REAL NOT NULL,
                leader_since REAL
            ) STRICT
            """,
        ),
    ),
)

POSTGRES_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "instances, join tokens, agent credentials, placement, last-known snapshots",
        (
            """
            CREATE TABLE instances (
                name TEXT PRIMARY KEY NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                joined_at DOUBLE PRECISION,
                address TEXT,
                version TEXT,
                last_seen DOUBLE PRECISION,
                machine TEXT  -- JSON object
            )
            """,
            # Secrets are kept only as their SHA-256 digests.
            """
            CREATE TABLE join_tokens (
                sha256 BYTEA PRIMARY KEY NOT NULL,
                instance TEXT NOT NULL REFERENCES instances (name) ON DELETE CASCADE,
                created_at DOUBLE PRECISION NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL,
                used_at DOUBLE PRECISION
            )
            """,
            "CREATE INDEX join_tokens_of_instance ON join_tokens (instance)",
            """
            CREATE TABLE credentials (
                sha256 BYTEA PRIMARY KEY NOT NULL,
                instance TEXT NOT NULL UNIQUE REFERENCES instances (name) ON DELETE CASCADE,
                created_at DOUBLE PRECISION NOT NULL
            )
            """,
            # The instance is 'local' or a row of instances (checked by the code, since
            # 'local' has no row).
            """
            CREATE TABLE placement (
                service TEXT PRIMARY KEY NOT NULL,
                instance TEXT NOT NULL
            )
            """,
            "CREATE INDEX placement_of_instance ON placement (instance)",
            """
            CREATE TABLE snapshots (
                instance TEXT PRIMARY KEY NOT NULL,
                at DOUBLE PRECISION NOT NULL,
                services TEXT NOT NULL  -- JSON list of services (codec JSON)
            )
            """,
        ),
    ),
    Migration(
        "control planes: each dployr up sharing the state, and the URL agents reach it at",
        (
            # One row per running control plane (a new id at each start); the leader
            # deletes those not seen for a while (killed, so never gone on their own).
            """
            CREATE TABLE control_planes (
                id TEXT PRIMARY KEY NOT NULL,
                url TEXT NOT NULL,
                started_at DOUBLE PRECISION NOT NULL,
                last_seen DOUBLE PRECISION NOT NULL,
                leader_since DOUBLE PRECISION
            )
            """,
        ),
    ),
)
