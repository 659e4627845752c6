"""The cluster state's rules and statements, shared by its SQLite and PostgreSQL backends.

Each function is the body of one transaction, given a :class:`Tx` (the backend's open
transaction) and, where time matters, the current time. The statements are the SQL both
databases understand, written with ``?`` placeholders (the PostgreSQL backend turns them into
``%s``); the backends differ only in how they open, migrate and run a transaction.

Secrets (join tokens and agent credentials) are random, shown once, and stored only as their
SHA-256 digests. A secret is looked up by comparing its digest with every stored one in
constant time, never by an index lookup that would stop early.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from dployr.models import NAME_PATTERN, NAME_RULE, check_name
from dployr.store.cluster.errors import (
    InstanceExists,
    InvalidClusterValue,
    InvalidInstanceName,
    InvalidJoinToken,
    UnknownInstance,
)
from dployr.store.cluster.records import ControlPlaneRecord, InstanceRecord, JoinToken

LOCAL: Final = "local"
"""The name of the control plane's own instance: always taken, never removed."""
JOIN_TOKEN_PREFIX: Final = "dployr_join_"
"""How every join token starts, so that one pasted in the wrong place is recognisable."""
CREDENTIAL_PREFIX: Final = "dployr_agent_"
"""How every agent credential starts."""
SECRET_BYTES: Final = 32
MIN_JOIN_TTL: Final = 1.0
MAX_JOIN_TTL: Final = 30 * 86400.0
"""A join token lives from one second to 30 days."""

Row = Mapping[str, Any]


class Tx(Protocol):
    """An open transaction of a backend."""

    share_lock: str
    """What ends a SELECT to keep the rows it read from changing until the transaction ends
    (PostgreSQL's `` FOR SHARE``; nothing in SQLite, whose writes hold the database lock)."""
    update_lock: str
    """The same, also keeping other transactions from locking them (`` FOR UPDATE``)."""

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Run a statement and return its rows (by column name)."""
        ...

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run a statement and return how many rows it changed."""
        ...


def check_instance_name(name: object) -> str:
    """Return ``name`` if it is a valid instance name, else raise InvalidInstanceName."""
    if not isinstance(name, str):
        raise InvalidInstanceName(f"an instance name must be text ({NAME_RULE}), not {name!r}")
    if not NAME_PATTERN.fullmatch(name):
        shown = name if len(name) <= 40 else name[:40] + "…"
        raise InvalidInstanceName(f"invalid instance name {shown!r}: use {NAME_RULE}")
    return name


def digest(secret: str) -> bytes:
    """The SHA-256 digest a secret is stored as."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def find_secret(rows: list[Row], secret: str) -> Row | None:
    """The row whose ``sha256`` is the digest of ``secret``, compared with every row."""
    wanted = digest(secret)
    found = None
    for row in rows:
        if hmac.compare_digest(bytes(row["sha256"]), wanted):
            found = row
    return found


def to_json(value: object, what: str) -> str:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise InvalidClusterValue(f"{what} is not JSON: {error}") from None


# -- instances and their secrets -----------------------------------------------------------


def add_instance(tx: Tx, name: str, ttl: float, now: float) -> JoinToken:
    check_instance_name(name)
    if name == LOCAL:
        raise InstanceExists(f"the instance {LOCAL!r} is the control plane's own: pick another")
    if (
        not isinstance(ttl, int | float)
        or isinstance(ttl, bool)
        or not math.isfinite(ttl)
        or not MIN_JOIN_TTL <= ttl <= MAX_JOIN_TTL
    ):
        raise InvalidClusterValue(
            f"a join token's lifetime must be from 1 second to 30 days, not {ttl!r}"
        )
    added = tx.run(
        "INSERT INTO instances (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        (name, now),
    )
    if not added:
        raise InstanceExists(f"an instance named {name!r} already exists")
    token = JOIN_TOKEN_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    expires_at = now + float(ttl)
    tx.run(
        "INSERT INTO join_tokens (sha256, instance, created_at, expires_at) VALUES (?, ?, ?, ?)",
        (digest(token), name, now, expires_at),
    )
    return JoinToken(instance=name, token=token, expires_at=expires_at)


def redeem(tx: Tx, token: str, now: float) -> tuple[str, str]:
    if not isinstance(token, str) or not token.startswith(JOIN_TOKEN_PREFIX):
        raise InvalidJoinToken(
            f"not a join token (they start with {JOIN_TOKEN_PREFIX!r}): "
            "create one with `dployr instances add NAME`"
        )
    row = find_secret(
        tx.rows("SELECT sha256, instance, expires_at, used_at FROM join_tokens"), token
    )
    if row is None:
        raise InvalidJoinToken(
            "unknown join token (its instance may have been removed): "
            "create one with `dployr instances add NAME`"
        )
    name = str(row["instance"])
    # The instance's row is locked first, as remove_instance does: a removal (or another
    # redeem) meanwhile is waited for, and then the instance or the token is found gone.
    if not tx.rows("SELECT 1 FROM instances WHERE name = ?" + tx.update_lock, (name,)):
        raise InvalidJoinToken(
            "unknown join token (its instance was removed): "
            "create one with `dployr instances add NAME`"
        )
    if row["used_at"] is not None:
        raise InvalidJoinToken(
            f"the join token of instance {name!r} was already used: remove the instance "
            "and add it again for a new one"
        )
    if now >= row["expires_at"]:
        raise InvalidJoinToken(
            f"the join token of instance {name!r} has expired: remove the instance and "
            "add it again for a new one"
        )
    # The condition makes the use single even when two control planes redeem at once.
    if not tx.run(
        "UPDATE join_tokens SET used_at = ? WHERE sha256 = ? AND used_at IS NULL",
        (now, row["sha256"]),
    ):
        raise InvalidJoinToken(f"the join token of instance {name!r} was already used")
    credential = CREDENTIAL_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    tx.run("DELETE FROM credentials WHERE instance = ?", (name,))
    tx.run(
        "INSERT INTO credentials (sha256, instance, created_at) VALUES (?, ?, ?)",
        (digest(credential), name, now),
    )
    tx.run("UPDATE instances SET joined_at = ? WHERE name = ?", (now, name))
    return name, credential


def authenticate(tx: Tx, credential: str) -> str | None:
    if not isinstance(credential, str) or not credential.startswith(CREDENTIAL_PREFIX):
        return None
    row = find_secret(tx.rows("SELECT sha256, instance FROM credentials"), credential)
    return None if row is None else str(row["instance"])


def remove_instance(tx: Tx, name: str) -> None:
    check_instance_name(name)
    if name == LOCAL:
        raise InvalidInstanceName(f"the instance {LOCAL!r} is the control plane's own: it stays")
    # The instance's row first: a placement or snapshot being written for it meanwhile
    # (which holds a share lock on the row) is waited for, then deleted below; one
    # written after finds no instance.
    # Its join token and credential go with it (ON DELETE CASCADE): revoked at once.
    if not tx.run("DELETE FROM instances WHERE name = ?", (name,)):
        raise UnknownInstance(f"no instance named {name!r}")
    tx.run("DELETE FROM placement WHERE instance = ?", (name,))
    tx.run("DELETE FROM snapshots WHERE instance = ?", (name,))


def instances(tx: Tx) -> list[InstanceRecord]:
    return [
        InstanceRecord(
            name=row["name"],
            created_at=row["created_at"],
            joined_at=row["joined_at"],
            address=row["address"],
            version=row["version"],
            last_seen=row["last_seen"],
            machine=None if row["machine"] is None else json.loads(row["machine"]),
        )
        for row in tx.rows("SELECT * FROM instances ORDER BY name")
    ]


def record_seen(
    tx: Tx,
    name: str,
    *,
    address: str | None,
    version: str | None,
    machine: Mapping[str, object] | None,
    at: float,
) -> None:
    machine_json = None if machine is None else to_json(dict(machine), "the machine sample")
    if not tx.run(
        "UPDATE instances SET address = ?, version = ?, machine = ?, last_seen = ? WHERE name = ?",
        (address, version, machine_json, at, name),
    ):
        raise UnknownInstance(f"no instance named {name!r}")


def _require_instance(tx: Tx, name: str) -> None:
    """Refuse a name that is neither ``local`` nor a known instance."""
    check_instance_name(name)
    # Locked, so that the instance cannot be removed before this transaction ends.
    if name != LOCAL and not tx.rows(
        "SELECT 1 FROM instances WHERE name = ?" + tx.share_lock, (name,)
    ):
        raise UnknownInstance(f"no instance named {name!r}")


# -- placement and last-known snapshots ----------------------------------------------------


def placement(tx: Tx) -> dict[str, str]:
    rows = tx.rows("SELECT service, instance FROM placement ORDER BY service")
    return {row["service"]: row["instance"] for row in rows}


def place(tx: Tx, service: str, instance: str) -> None:
    check_name(service)
    _require_instance(tx, instance)
    tx.run(
        "INSERT INTO placement (service, instance) VALUES (?, ?)"
        " ON CONFLICT (service) DO UPDATE SET instance = excluded.instance",
        (service, instance),
    )


def unplace(tx: Tx, service: str) -> None:
    tx.run("DELETE FROM placement WHERE service = ?", (service,))


def record_snapshot(tx: Tx, instance: str, services: list[dict[str, object]], at: float) -> None:
    _require_instance(tx, instance)
    if not isinstance(services, list) or not all(isinstance(item, dict) for item in services):
        raise InvalidClusterValue("a snapshot is a list of services (JSON objects)")
    # An older snapshot (one that took longer to arrive) never replaces a newer one.
    tx.run(
        "INSERT INTO snapshots (instance, at, services) VALUES (?, ?, ?)"
        " ON CONFLICT (instance) DO UPDATE SET at = excluded.at, services = excluded.services"
        " WHERE excluded.at >= snapshots.at",
        (instance, at, to_json(services, "the snapshot")),
    )


def snapshots(tx: Tx) -> dict[str, tuple[float, list[dict[str, object]]]]:
    rows = tx.rows("SELECT instance, at, services FROM snapshots ORDER BY instance")
    return {row["instance"]: (row["at"], json.loads(row["services"])) for row in rows}


# -- control planes ------------------------------------------------------------------------


def check_control_plane(control_plane: str, url: str) -> None:
    """Refuse an id or URL no agent could use (the URL is sent to every agent)."""
    if not isinstance(control_plane, str) or not 0 < len(control_plane) <= 64:
        raise InvalidClusterValue("a control plane's id is 1 to 64 characters")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 2000:
        raise InvalidClusterValue(
            f"a control plane's URL starts with http:// or https://, not {url[:80]!r}"
        )


def announce(tx: Tx, control_plane: str, url: str, now: float) -> None:
    check_control_plane(control_plane, url)
    tx.run(
        "INSERT INTO control_planes (id, url, started_at, last_seen) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET url = excluded.url, last_seen = excluded.last_seen",
        (control_plane, url, now, now),
    )


def record_alive(tx: Tx, control_plane: str, now: float) -> bool:
    """Refresh a control plane's last seen; False if it has no row (it was pruned)."""
    return bool(
        tx.run("UPDATE control_planes SET last_seen = ? WHERE id = ?", (now, control_plane))
    )


def leave(tx: Tx, control_plane: str) -> None:
    tx.run("DELETE FROM control_planes WHERE id = ?", (control_plane,))


def record_leader(tx: Tx, control_plane: str, now: float) -> None:
    # Whoever recorded itself leader before did not say it stopped (it was killed).
    tx.run(
        "UPDATE control_planes SET leader_since = NULL WHERE id <> ? AND leader_since IS NOT NULL",
        (control_plane,),
    )
    tx.run("UPDATE control_planes SET leader_since = ? WHERE id = ?", (now, control_plane))


def control_planes(tx: Tx, since: float) -> list[ControlPlaneRecord]:
    rows = tx.rows(
        "SELECT * FROM control_planes WHERE last_seen >= ? ORDER BY started_at, id", (since,)
    )
    return [
        ControlPlaneRecord(
            id=row["id"],
            url=row["url"],
            started_at=row["started_at"],
            last_seen=row["last_seen"],
            leader_since=row["leader_since"],
        )
        for row in rows
    ]


def control_planes_before(tx: Tx, before: float) -> list[str]:
    rows = tx.rows("SELECT id FROM control_planes WHERE last_seen < ?", (before,))
    return [str(row["id"]) for row in rows]


def prune_control_planes(tx: Tx, before: float) -> int:
    return tx.run("DELETE FROM control_planes WHERE last_seen < ?", (before,))
