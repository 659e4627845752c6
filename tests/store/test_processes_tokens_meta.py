"""Recorded process groups, API tokens kept as digests, and the meta table."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from dployr.store import (
    TOKEN_PREFIX,
    Cipher,
    InvalidTokenName,
    ProcessRecord,
    Store,
    TokenExists,
    TokenRecord,
    UnknownDeployment,
    UnknownToken,
)
from tests.store.conftest import Clock, make_settings


def test_record_list_and_forget_processes(store: Store) -> None:
    store.create_service("web", make_settings())
    store.create_service("api", make_settings())
    web = store.create_deployment("web", make_settings()).id
    api = store.create_deployment("api", make_settings()).id
    recorded = [
        store.record_process("web", web, 300, 300, 10.5, "tok-a"),
        store.record_process("api", api, 200, 199, 11.0, "tok-b"),
        store.record_process("web", web, 100, 100, 12.0, "tok-c"),
    ]
    assert recorded[1] == ProcessRecord("api", api, 200, 199, 11.0, "tok-b")
    assert store.recorded_processes() == [recorded[1], recorded[2], recorded[0]]
    assert store.forget_process(300) is True
    assert store.forget_process(300) is False
    assert [p.pid for p in store.recorded_processes()] == [200, 100]


def test_a_reused_pid_replaces_the_stale_record(store: Store) -> None:
    store.create_service("web", make_settings())
    deployment = store.create_deployment("web", make_settings()).id
    store.record_process("web", deployment, 7, 7, 1.0, "old")
    new = store.record_process("web", deployment, 7, 7, 2.0, "new")
    assert store.recorded_processes() == [new]


def test_a_process_needs_a_deployment_of_its_service(store: Store) -> None:
    store.create_service("web", make_settings())
    store.create_service("api", make_settings())
    other = store.create_deployment("api", make_settings()).id
    for deployment in (other, 999):
        with pytest.raises(UnknownDeployment, match="service 'web' has no deployment"):
            store.record_process("web", deployment, 1, 1, 0.0, "t")
    assert store.recorded_processes() == []


def test_tokens_are_kept_only_as_digests(store: Store, db_path: Path, clock: Clock) -> None:
    token = store.create_token("ci")
    assert token.startswith(TOKEN_PREFIX)
    assert len(token) > len(TOKEN_PREFIX) + 40
    assert store.verify_token(token)
    assert store.list_tokens() == [TokenRecord("ci", clock.now)]
    with sqlite3.connect(db_path) as raw:
        rows = raw.execute("SELECT name, sha256, created_at FROM api_tokens").fetchall()
    raw.close()
    assert rows == [("ci", hashlib.sha256(token.encode()).digest(), clock.now)]
    written = b"".join(p.read_bytes() for p in db_path.parent.glob("dployr.db*"))
    assert token.encode() not in written
    assert token[len(TOKEN_PREFIX) :].encode() not in written


def test_verify_refuses_anything_else(store: Store) -> None:
    token = store.create_token("ci")
    assert not store.verify_token(token + "x")
    assert not store.verify_token(token[:-1])
    assert not store.verify_token("")
    assert not store.verify_token(TOKEN_PREFIX)
    assert not store.verify_token(token.removeprefix(TOKEN_PREFIX))
    assert not store.verify_token(None)  # type: ignore[arg-type]


def test_tokens_are_distinct_and_revocable(store: Store, clock: Clock) -> None:
    first = store.create_token("laptop of ann")
    clock.advance(1)
    second = store.create_token("ci")
    assert first != second
    assert [t.name for t in store.list_tokens()] == ["ci", "laptop of ann"]
    store.delete_token("ci")
    assert not store.verify_token(second)
    assert store.verify_token(first)
    with pytest.raises(UnknownToken, match="no API token named 'ci'"):
        store.delete_token("ci")


def test_token_names_are_unique_and_checked(store: Store) -> None:
    first = store.create_token("ci")
    with pytest.raises(TokenExists, match="an API token named 'ci' already exists"):
        store.create_token("ci")
    assert store.verify_token(first)
    for bad in ["", " ci", "ci ", "a\nb", "x" * 101, "a/b"]:
        with pytest.raises(InvalidTokenName):
            store.create_token(bad)
    assert [t.name for t in store.list_tokens()] == ["ci"]


def test_meta(store: Store) -> None:
    assert store.get_meta("anything") is None
    store.set_meta("cluster", "home")
    store.set_meta("cluster", "lab")
    assert store.get_meta("cluster") == "lab"
    with pytest.raises(ValueError, match="non-empty"):
        store.set_meta("", "x")


def test_instance_id_is_chosen_once(db_path: Path, cipher: Cipher) -> None:
    with Store.open(db_path, cipher=cipher) as store:
        first = store.instance_id()
        assert store.instance_id() == first
        assert store.get_meta("instance_id") == first
    with Store.open(db_path, cipher=cipher) as store:
        assert store.instance_id() == first
