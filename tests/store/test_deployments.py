"""Deployments: one global id sequence, status updates, and failing interrupted ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from dployr.models import Deployment, DeploymentStatus
from dployr.store import (
    UNSET,
    Cipher,
    DeploymentFinished,
    Store,
    UnknownDeployment,
)
from tests.store.conftest import Clock, make_settings


@pytest.fixture
def web(store: Store) -> str:
    store.create_service("web", make_settings())
    return "web"


def test_create_deployment_is_pending(store: Store, web: str, clock: Clock) -> None:
    deployment = store.create_deployment(web, make_settings(port=1234))
    assert deployment == Deployment(
        id=deployment.id,
        service=web,
        status=DeploymentStatus.PENDING,
        settings=make_settings(port=1234),
        created_at=clock.now,
    )
    assert store.get_deployment(deployment.id) == deployment
    assert store.get_deployment(deployment.id + 1) is None


def test_ids_are_one_sequence_across_services(store: Store, web: str) -> None:
    store.create_service("api", make_settings())
    ids = [store.create_deployment(name, make_settings()).id for name in [web, "api", web]]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3


def test_ids_are_never_reused_after_deleting_a_service(
    store: Store, web: str, db_path: Path, cipher: Cipher
) -> None:
    store.create_service("api", make_settings())
    first = store.create_deployment("api", make_settings()).id
    latest = [store.create_deployment(web, make_settings()).id for _ in range(3)]
    # Deleting the service removes the newest rows: a plain rowid would hand them out again.
    store.delete_service(web)
    store.create_service(web, make_settings())
    again = store.create_deployment(web, make_settings()).id
    assert again > max(latest) > first
    store.delete_service(web)
    store.close()
    with Store.open(db_path, cipher=cipher) as reopened:
        reopened.create_service(web, make_settings())
        assert reopened.create_deployment(web, make_settings()).id > again


def test_update_deployment_through_to_success(store: Store, web: str, clock: Clock) -> None:
    deployment = store.create_deployment(web, make_settings())
    clock.advance(1)
    fetching = store.update_deployment(deployment.id, status=DeploymentStatus.FETCHING)
    assert fetching.status is DeploymentStatus.FETCHING
    assert fetching.finished_at is None
    clock.advance(1)
    building = store.update_deployment(
        deployment.id, status=DeploymentStatus.BUILDING, revision="abc1234"
    )
    assert building.revision == "abc1234"
    assert building.finished_at is None
    clock.advance(1)
    done = store.update_deployment(deployment.id, status=DeploymentStatus.SUCCEEDED)
    assert done.finished_at == clock.now
    assert done.created_at == deployment.created_at
    assert done.revision == "abc1234"
    assert store.get_deployment(deployment.id) == done


def test_update_deployment_failed_build(store: Store, web: str, clock: Clock) -> None:
    deployment = store.create_deployment(web, make_settings())
    clock.advance(7)
    failed = store.update_deployment(
        deployment.id,
        status=DeploymentStatus.FAILED,
        exit_code=2,
        error="the build command exited with code 2",
        output_tail=["compiling…", "error: missing semicolon"],
    )
    assert failed == Deployment(
        id=deployment.id,
        service=web,
        status=DeploymentStatus.FAILED,
        settings=deployment.settings,
        created_at=deployment.created_at,
        finished_at=clock.now,
        exit_code=2,
        error="the build command exited with code 2",
        output_tail=("compiling…", "error: missing semicolon"),
    )
    assert store.get_deployment(deployment.id) == failed


def test_unset_fields_are_kept_and_none_clears(store: Store, web: str) -> None:
    deployment = store.create_deployment(web, make_settings())
    store.update_deployment(deployment.id, error="oops", revision="r1")
    kept = store.update_deployment(deployment.id, exit_code=UNSET, revision=UNSET)
    assert (kept.error, kept.revision) == ("oops", "r1")
    cleared = store.update_deployment(deployment.id, error=None)
    assert (cleared.error, cleared.revision) == (None, "r1")
    assert store.get_deployment(deployment.id) == cleared


def test_a_finished_deployment_keeps_its_status(store: Store, web: str, clock: Clock) -> None:
    deployment = store.create_deployment(web, make_settings())
    done = store.update_deployment(deployment.id, status=DeploymentStatus.SUCCEEDED)
    clock.advance(5)
    with pytest.raises(DeploymentFinished, match="already succeeded; it cannot become failed"):
        store.update_deployment(deployment.id, status=DeploymentStatus.FAILED, error="late")
    assert store.get_deployment(deployment.id) == done
    # The same status again changes nothing, finished_at included; other fields may be filled.
    again = store.update_deployment(
        deployment.id, status=DeploymentStatus.SUCCEEDED, output_tail=["ok"]
    )
    assert again.finished_at == done.finished_at
    assert again.output_tail == ("ok",)


def test_update_unknown_deployment(store: Store) -> None:
    with pytest.raises(UnknownDeployment, match="no deployment with id 42"):
        store.update_deployment(42, status=DeploymentStatus.FAILED)


def test_output_tail_must_be_lines(store: Store, web: str) -> None:
    deployment = store.create_deployment(web, make_settings())
    with pytest.raises(TypeError, match="sequence of lines"):
        store.update_deployment(deployment.id, output_tail="one string")


def test_deployments_newest_first_with_limit(store: Store, web: str, clock: Clock) -> None:
    store.create_service("api", make_settings())
    made = []
    for _ in range(5):
        made.append(store.create_deployment(web, make_settings()))
        store.create_deployment("api", make_settings())
        clock.advance(1)
    assert store.deployments(web) == made[::-1]
    assert store.deployments(web, limit=2) == made[:-3:-1]
    assert store.deployments(web, limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        store.deployments(web, limit=-1)


def test_fail_interrupted_deployments(store: Store, web: str, clock: Clock) -> None:
    store.create_service("api", make_settings())
    statuses = [
        DeploymentStatus.PENDING,
        DeploymentStatus.FETCHING,
        DeploymentStatus.BUILDING,
        DeploymentStatus.STARTING,
        DeploymentStatus.SUCCEEDED,
        DeploymentStatus.FAILED,
    ]
    made = {}
    for index, status in enumerate(statuses):
        deployment = store.create_deployment(web if index % 2 else "api", make_settings())
        if status is not DeploymentStatus.PENDING:
            deployment = store.update_deployment(deployment.id, status=status)
        made[status] = deployment
    clock.advance(60)

    failed = store.fail_interrupted_deployments("the daemon stopped during the deploy")

    unfinished = [made[status] for status in statuses[:4]]
    assert [d.id for d in failed] == [d.id for d in unfinished]
    for deployment in failed:
        assert deployment.status is DeploymentStatus.FAILED
        assert deployment.error == "the daemon stopped during the deploy"
        assert deployment.finished_at == clock.now
        assert store.get_deployment(deployment.id) == deployment
    for status in statuses[4:]:
        assert store.get_deployment(made[status].id) == made[status]
    assert store.fail_interrupted_deployments("again") == []
