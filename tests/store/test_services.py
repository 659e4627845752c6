"""Services: create, read, list, change and delete, with exact settings round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from dployr.models import DesiredState, InvalidName, ServiceSettings, Source
from dployr.store import (
    Cipher,
    ServiceExists,
    ServiceRecord,
    Store,
    StoreError,
    UnknownDeployment,
    UnknownService,
)
from tests.store.conftest import Clock, make_settings
from tests.store.strategies import service_settings


def test_create_then_get(store: Store, clock: Clock) -> None:
    created = store.create_service("web", make_settings())
    assert created == ServiceRecord(
        name="web",
        settings=make_settings(),
        desired=DesiredState.STOPPED,
        active_deployment=None,
        created_at=clock.now,
        updated_at=clock.now,
    )
    assert store.get_service("web") == created


def test_get_unknown_service_is_none(store: Store) -> None:
    assert store.get_service("nope") is None
    assert store.get_service("Not A Name") is None


def test_create_twice_is_refused_and_keeps_the_first(store: Store) -> None:
    store.create_service("web", make_settings(port=1))
    with pytest.raises(ServiceExists, match="a service named 'web' already exists"):
        store.create_service("web", make_settings(port=2))
    record = store.get_service("web")
    assert record is not None
    assert record.settings.port == 1


def test_create_refuses_an_invalid_name(store: Store) -> None:
    with pytest.raises(InvalidName):
        store.create_service("Web App", make_settings())
    assert store.list_services() == []


def test_create_with_desired_running(store: Store) -> None:
    record = store.create_service("web", make_settings(), desired=DesiredState.RUNNING)
    assert record.desired is DesiredState.RUNNING
    assert store.get_service("web") == record


def test_list_is_by_name(store: Store) -> None:
    for name in ["zeta", "alpha", "mid-1", "mid-0"]:
        store.create_service(name, make_settings())
    assert [record.name for record in store.list_services()] == [
        "alpha",
        "mid-0",
        "mid-1",
        "zeta",
    ]


def test_update_settings(store: Store, clock: Clock) -> None:
    created = store.create_service("web", make_settings())
    clock.advance(5)
    new = make_settings(port=9000, description="the new one", build_cmd=None)
    updated = store.update_settings("web", new)
    assert updated.settings == new
    assert updated.created_at == created.created_at
    assert updated.updated_at == created.created_at + 5
    assert store.get_service("web") == updated


def test_set_desired(store: Store, clock: Clock) -> None:
    store.create_service("web", make_settings())
    clock.advance(1)
    record = store.set_desired("web", DesiredState.RUNNING)
    assert record.desired is DesiredState.RUNNING
    assert record.updated_at == clock.now
    assert store.get_service("web") == record
    assert store.set_desired("web", DesiredState.STOPPED).desired is DesiredState.STOPPED


def test_set_active_deployment(store: Store) -> None:
    store.create_service("web", make_settings())
    deployment = store.create_deployment("web", make_settings())
    assert store.set_active_deployment("web", deployment.id).active_deployment == deployment.id
    record = store.get_service("web")
    assert record is not None
    assert record.active_deployment == deployment.id
    assert store.set_active_deployment("web", None).active_deployment is None


def test_active_deployment_must_exist_and_be_the_services_own(store: Store) -> None:
    store.create_service("web", make_settings())
    store.create_service("api", make_settings())
    other = store.create_deployment("api", make_settings())
    with pytest.raises(UnknownDeployment, match="'web' has no deployment 999"):
        store.set_active_deployment("web", 999)
    with pytest.raises(UnknownDeployment, match="'web' has no deployment 1"):
        store.set_active_deployment("web", other.id)
    record = store.get_service("web")
    assert record is not None
    assert record.active_deployment is None


def test_delete_service_removes_everything_it_owns(store: Store) -> None:
    store.create_service("web", make_settings())
    store.create_service("api", make_settings())
    deployment = store.create_deployment("web", make_settings())
    kept = store.create_deployment("api", make_settings())
    store.set_active_deployment("web", deployment.id)
    store.set_env("web", {"A": "1"})
    store.set_env("web", {"S": "secret"}, secret=True)
    store.set_env("api", {"B": "2"})
    store.record_process("web", deployment.id, 100, 100, 1.0, "t1")
    store.record_process("api", kept.id, 200, 200, 1.0, "t2")

    store.delete_service("web")

    assert store.get_service("web") is None
    assert store.get_deployment("web", deployment.id) is None
    assert [p.pid for p in store.recorded_processes()] == [200]
    assert store.get_deployment("api", kept.id) == kept
    assert [(v.key, v.value) for v in store.env("api")] == [("B", "2")]
    # A new service of the same name starts empty.
    store.create_service("web", make_settings())
    assert store.env("web") == []
    assert store.deployments("web") == []


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.update_settings("ghost", make_settings()),
        lambda s: s.set_desired("ghost", DesiredState.RUNNING),
        lambda s: s.set_active_deployment("ghost", None),
        lambda s: s.set_active_deployment("ghost", 1),
        lambda s: s.delete_service("ghost"),
        lambda s: s.set_env("ghost", {"A": "1"}),
        lambda s: s.set_env("ghost", {}),
        lambda s: s.unset_env("ghost", ["A"]),
        lambda s: s.env("ghost"),
        lambda s: s.env_listing("ghost"),
        lambda s: s.create_deployment("ghost", make_settings()),
        lambda s: s.deployments("ghost"),
        lambda s: s.record_process("ghost", 1, 1, 1, 0.0, "t"),
    ],
)
def test_unknown_service_is_a_clear_error(store: Store, call: object) -> None:
    with pytest.raises(UnknownService, match=r"^no service named 'ghost'$"):
        call(store)  # type: ignore[operator]
    assert store.list_services() == []


def test_settings_round_trip_with_every_optional_field_none(store: Store) -> None:
    bare = ServiceSettings(source=Source("/srv/app"), run_cmd="./run")
    assert bare.build_cmd is None
    assert bare.port is None
    assert bare.health_check is None
    store.create_service("bare", bare)
    record = store.get_service("bare")
    assert record is not None
    assert record.settings == bare
    assert store.create_deployment("bare", bare).settings == bare


def test_settings_round_trip_with_every_field_set(store: Store, db_path: Path) -> None:
    full = ServiceSettings(
        source=Source("git@example.com:team/app.git", branch="release/1.2", commit="0a1b2c3"),
        run_cmd="gunicorn app:app --bind 127.0.0.1:$PORT",
        build_cmd="make build",
        port=65535,
        working_dir="services/api",
        description="Ünïcode — “quotes” and 'apostrophes' \\ backslashes\nand lines",
        health_check="/healthz?deep=1",
        stop_grace=0.1,
    )
    store.create_service("full", full)
    store.close()
    with Store.open(db_path, cipher=Cipher.generate()) as reopened:
        record = reopened.get_service("full")
    assert record is not None
    assert record.settings == full


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=150)
@given(service_settings)
def test_any_valid_settings_round_trip_through_the_store(
    store: Store, settings_: ServiceSettings
) -> None:
    if store.get_service("prop") is None:
        store.create_service("prop", settings_)
    record = store.update_settings("prop", settings_)
    assert record.settings == settings_
    stored = store.get_service("prop")
    assert stored is not None
    assert stored.settings == settings_
    deployment = store.create_deployment("prop", settings_)
    assert store.get_deployment("prop", deployment.id) == deployment
    assert deployment.settings == settings_


def test_a_closed_store_refuses_calls(db_path: Path) -> None:
    store = Store.open(db_path, cipher=Cipher.generate())
    store.close()
    store.close()  # twice is harmless
    assert store.closed
    with pytest.raises(StoreError, match="is closed"):
        store.list_services()
