"""Environment variables: set, unset, list with secrets masked, and all-or-nothing writes."""

from __future__ import annotations

import pytest

from dployr.models import EnvVar, InvalidSetting
from dployr.store import SECRET_MASK, Store
from tests.store.conftest import Clock, make_settings


@pytest.fixture
def web(store: Store) -> str:
    store.create_service("web", make_settings())
    return "web"


def test_set_and_read_back_by_key(store: Store, web: str) -> None:
    store.set_env(web, {"ZED": "last", "A_KEY": "first", "EMPTY": ""})
    assert store.env(web) == [
        EnvVar("A_KEY", "first"),
        EnvVar("EMPTY", ""),
        EnvVar("ZED", "last"),
    ]
    assert store.env_listing(web) == store.env(web)


def test_set_overwrites_and_keeps_other_keys(store: Store, web: str) -> None:
    store.set_env(web, {"A": "1", "B": "2"})
    store.set_env(web, {"B": "two", "C": "3"})
    assert [(v.key, v.value) for v in store.env(web)] == [("A", "1"), ("B", "two"), ("C", "3")]


def test_secrets_are_masked_in_the_listing_only(store: Store, web: str) -> None:
    store.set_env(web, {"PLAIN": "visible"})
    store.set_env(web, {"TOKEN": "s3cr3t", "PASSWORD": "hunter2"}, secret=True)
    assert store.env(web) == [
        EnvVar("PASSWORD", "hunter2", secret=True),
        EnvVar("PLAIN", "visible"),
        EnvVar("TOKEN", "s3cr3t", secret=True),
    ]
    assert store.env_listing(web) == [
        EnvVar("PASSWORD", SECRET_MASK, secret=True),
        EnvVar("PLAIN", "visible"),
        EnvVar("TOKEN", SECRET_MASK, secret=True),
    ]


def test_setting_a_key_again_takes_its_new_secrecy(store: Store, web: str) -> None:
    store.set_env(web, {"KEY": "plain"})
    store.set_env(web, {"KEY": "hidden"}, secret=True)
    assert store.env(web) == [EnvVar("KEY", "hidden", secret=True)]
    store.set_env(web, {"KEY": "plain again"})
    assert store.env(web) == [EnvVar("KEY", "plain again")]


def test_unset_returns_the_keys_actually_removed(store: Store, web: str) -> None:
    store.set_env(web, {"A": "1", "B": "2", "C": "3"})
    store.set_env(web, {"S": "x"}, secret=True)
    assert store.unset_env(web, ["C", "MISSING", "A", "S", "A"]) == ["C", "A", "S"]
    assert [v.key for v in store.env(web)] == ["B"]
    assert store.unset_env(web, ["A"]) == []


def test_env_is_per_service(store: Store, web: str) -> None:
    store.create_service("api", make_settings())
    store.set_env(web, {"A": "web"})
    store.set_env("api", {"A": "api"})
    assert store.env(web) == [EnvVar("A", "web")]
    assert store.env("api") == [EnvVar("A", "api")]


@pytest.mark.parametrize(
    "case",
    [
        ({"GOOD": "1", "1BAD": "2"}, "invalid environment variable name '1BAD'"),
        ({"GOOD": "1", "BAD-KEY": "2"}, "invalid environment variable name"),
        ({"GOOD": "1", "": "2"}, "invalid environment variable name"),
        ({"GOOD": "1", "PORT": "2"}, "PORT is set by dployr"),
        ({"GOOD": "1", "NUL": "a\x00b"}, "the value of NUL must be text without NUL"),
        ({"GOOD": "1", "BIG": "x" * 65537}, "up to 64 KiB"),
        ({"GOOD": "1", "SURROGATE": "\udcff"}, "not valid Unicode"),
    ],
)
@pytest.mark.parametrize("secret", [False, True])
def test_invalid_env_is_refused_and_nothing_is_written(
    store: Store, web: str, clock: Clock, case: tuple[dict[str, str], str], secret: bool
) -> None:
    values, message = case
    store.set_env(web, {"KEEP": "old"})
    before = store.get_service(web)
    clock.advance(10)
    with pytest.raises(InvalidSetting, match=message):
        store.set_env(web, values, secret=secret)
    assert store.env(web) == [EnvVar("KEEP", "old")]
    assert store.get_service(web) == before


def test_env_changes_touch_the_service(store: Store, web: str, clock: Clock) -> None:
    clock.advance(3)
    store.set_env(web, {"A": "1"})
    record = store.get_service(web)
    assert record is not None
    assert record.updated_at == clock.now
    clock.advance(3)
    store.unset_env(web, ["NOT_SET"])
    record = store.get_service(web)
    assert record is not None
    assert record.updated_at == clock.now - 3  # nothing removed, nothing changed
