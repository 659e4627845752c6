"""Scoped and expiring API tokens, logged-out dashboard sessions and the audit log."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dployr.models import InvalidName
from dployr.store import AuditRecord, InvalidToken, Scope, Store, TokenRecord
from dployr.store.base import AUDIT_KEPT
from tests.store.conftest import Clock


def test_a_token_carries_its_scope_service_and_expiry(store: Store, clock: Clock) -> None:
    token = store.create_token("ci", scope=Scope.DEPLOY, service="web", expires_in=3600)
    expected = TokenRecord("ci", clock.now, Scope.DEPLOY, "web", clock.now + 3600, None)
    assert store.list_tokens() == [expected]
    assert store.authenticate(token) == TokenRecord(
        "ci", clock.now, Scope.DEPLOY, "web", clock.now + 3600, clock.now
    )


def test_an_expired_token_is_refused_at_once(store: Store, clock: Clock) -> None:
    token = store.create_token("short", scope=Scope.READ, expires_in=60)
    clock.advance(59.9)
    assert store.authenticate(token) is not None
    clock.advance(0.1)
    assert store.authenticate(token) is None
    assert not store.verify_token(token)


def test_a_revoked_token_is_refused_at_once(store: Store) -> None:
    token = store.create_token("ci", scope=Scope.READ)
    assert store.authenticate(token) is not None
    store.delete_token("ci")
    assert store.authenticate(token) is None


def test_last_use_is_written_once_a_minute(store: Store, clock: Clock) -> None:
    token = store.create_token("ci")
    assert store.list_tokens()[0].last_used_at is None
    store.authenticate(token)
    first = clock.now
    clock.advance(30)
    store.authenticate(token)
    assert store.list_tokens()[0].last_used_at == first
    clock.advance(30)
    store.authenticate(token)
    assert store.list_tokens()[0].last_used_at == clock.now
    clock.advance(300)
    store.verify_token(token)  # the daemon checking its admin-token file is not a use
    assert store.list_tokens()[0].last_used_at == clock.now - 300


def test_rights_that_do_not_go_together_are_refused(store: Store, clock: Clock) -> None:
    for lifetime in (0, 0.5, -1, 5e-324, 11 * 365 * 86400, float("inf"), float("nan")):
        with pytest.raises(InvalidToken, match="lifetime must be from 1 second to 10 years"):
            store.create_token("b", scope=Scope.READ, expires_in=lifetime)
    with pytest.raises(InvalidName):
        store.create_token("c", scope=Scope.READ, service="../etc")
    with pytest.raises(InvalidToken, match="invalid scope"):
        store.create_token("d", scope="read")  # type: ignore[arg-type]
    assert store.list_tokens() == []


def test_an_old_database_keeps_its_tokens_as_admin_tokens(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "dployr.db"
    with Store.open(path, clock=clock) as store:
        token = store.create_token("old")
    with sqlite3.connect(path) as raw:
        (scope,) = raw.execute("SELECT scope FROM api_tokens").fetchone()
    raw.close()
    assert scope == "admin"
    with Store.open(path, clock=clock) as store:
        record = store.authenticate(token)
    assert record == TokenRecord("old", clock.now, Scope.ADMIN, None, None, clock.now)


def test_a_logged_out_session_stays_out_after_reopening(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "dployr.db"
    with Store.open(path, clock=clock) as store:
        store.revoke_session("abc", clock.now + 100)
        assert store.session_revoked("abc")
        assert not store.session_revoked("abd")
    with Store.open(path, clock=clock) as store:
        assert store.session_revoked("abc")
        clock.advance(101)
        store.revoke_session("later", clock.now + 100)  # drops what has expired anyway
        assert not store.session_revoked("abc")
        assert store.session_revoked("later")


def test_the_audit_log_lists_newest_first_by_service(store: Store, clock: Clock) -> None:
    store.record_audit("ci", "POST", "/api/v1/services/web/deploy", "web", 202)
    clock.advance(1)
    store.record_audit("ann", "DELETE", "/api/v1/services/api", "api", 200)
    clock.advance(1)
    store.record_audit(None, "POST", "/api/v1/tokens", None, 403)
    assert [r.token for r in store.audit()] == [None, "ann", "ci"]
    assert store.audit(service="web") == [
        AuditRecord(1, clock.now - 2, "ci", "POST", "/api/v1/services/web/deploy", "web", 202)
    ]
    assert [r.id for r in store.audit(limit=2)] == [3, 2]


def test_the_audit_log_keeps_the_newest_records(store: Store, db_path: Path) -> None:
    with sqlite3.connect(db_path) as raw:
        for id, token in ((1, "oldest"), (AUDIT_KEPT, "kept")):
            raw.execute(
                "INSERT INTO audit (id, at, token, method, path, service, status)"
                " VALUES (?, 0, ?, 'POST', '/x', NULL, 200)",
                (id, token),
            )
    raw.close()
    store.record_audit("new", "POST", "/y", None, 200)
    assert [r.token for r in store.audit()] == ["new", "kept"]


@pytest.mark.slow
def test_a_token_still_works_when_its_last_use_cannot_be_written(
    store: Store, db_path: Path, clock: Clock
) -> None:
    token = store.create_token("ci", scope=Scope.READ)
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the database (5 s timeout)
        record = store.authenticate(token)
        assert record is not None
        assert record.last_used_at is None
    finally:
        other.execute("ROLLBACK")
        other.close()
    record = store.authenticate(token)
    assert record is not None
    assert record.last_used_at == clock.now
