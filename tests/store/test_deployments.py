"""Deployments: numbered per service, status updates, rollbacks, a deploy's variables."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dployr import serde
from dployr.models import Deployment, DeploymentStatus, InvalidSetting, Source
from dployr.store import (
    UNSET,
    Cipher,
    DeploymentFinished,
    Store,
    UnknownDeployment,
)
from dployr.store import schema as migrations
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
    assert store.get_deployment(deployment.service, deployment.id) == deployment
    assert store.get_deployment(web, deployment.id + 1) is None


def test_each_service_numbers_its_own_deployments(store: Store, web: str) -> None:
    store.create_service("api", make_settings())
    numbers = [
        (name, store.create_deployment(name, make_settings()).id)
        for name in [web, "api", web, web, "api"]
    ]
    assert numbers == [(web, 1), ("api", 1), (web, 2), (web, 3), ("api", 2)]
    assert [d.id for d in store.deployments(web)] == [3, 2, 1]
    assert store.get_deployment("api", 2) is not None
    assert store.get_deployment("api", 3) is None


def test_numbers_go_on_after_reopening_and_start_over_for_a_new_service(
    store: Store, web: str, db_path: Path, cipher: Cipher
) -> None:
    latest = [store.create_deployment(web, make_settings()).id for _ in range(3)]
    assert latest == [1, 2, 3]
    store.close()
    with Store.open(db_path, cipher=cipher) as reopened:
        assert reopened.create_deployment(web, make_settings()).id == 4
        # A service deleted and created again is a new service: its history starts at 1.
        reopened.delete_service(web)
        reopened.create_service(web, make_settings())
        assert reopened.create_deployment(web, make_settings()).id == 1


def test_a_rollback_is_a_deployment_that_runs_an_earlier_folder(store: Store, web: str) -> None:
    first = store.update_deployment(
        web, store.create_deployment(web, make_settings()).id, revision="aaa"
    )
    store.create_deployment(web, make_settings(port=9000))
    back = store.create_deployment(web, first.settings, rollback_of=first)
    assert (back.id, back.rollback_of, back.folder, back.revision) == (3, 1, 1, "aaa")
    assert store.get_deployment(web, 3) == back
    # Back to the rollback: the folder is still the first one's.
    again = store.create_deployment(web, back.settings, rollback_of=back)
    assert (again.id, again.rollback_of, again.folder) == (4, 3, 1)


def test_a_deploys_variables_join_the_environment_only_when_it_is_activated(
    store: Store, web: str
) -> None:
    store.set_env(web, {"KEEP": "1", "CHANGED": "old"})
    deployment = store.create_deployment(
        web, make_settings(port=9000), env={"CHANGED": "new"}, secrets={"TOKEN": "s3cr3t"}
    )
    assert store.deployment_env(web, deployment.id) == {"CHANGED": "new", "TOKEN": "s3cr3t"}
    assert {v.key: v.value for v in store.env(web)} == {"KEEP": "1", "CHANGED": "old"}
    record = store.get_service(web)
    assert record is not None
    assert record.settings.port == 8000

    record = store.activate_deployment(web, deployment.id, settings=make_settings(port=9000))

    assert record.active_deployment == deployment.id
    assert record.settings.port == 9000
    env = {v.key: (v.value, v.secret) for v in store.env(web)}
    assert env == {"KEEP": ("1", False), "CHANGED": ("new", False), "TOKEN": ("s3cr3t", True)}


def test_bad_variables_of_a_deploy_record_nothing(store: Store, web: str) -> None:
    with pytest.raises(InvalidSetting):
        store.create_deployment(web, make_settings(), env={"PORT": "1"})
    assert store.deployments(web) == []


def test_old_records_keep_their_numbers_and_folders(db_path: Path, cipher: Cipher) -> None:
    # A database written before deployments were numbered per service: ids were global.
    old = migrations.MIGRATIONS[:2]
    db = sqlite3.connect(db_path, isolation_level=None)
    migrations.migrate(db, db_path, old)
    settings = serde.dumps(make_settings(source=Source("/src", commit="deadbeef")))
    db.execute("INSERT INTO services VALUES ('web', ?, 'running', NULL, 1.0, 1.0)", (settings,))
    db.execute("INSERT INTO services VALUES ('api', ?, 'running', NULL, 1.0, 1.0)", (settings,))
    for service in ["web", "api", "web"]:
        db.execute(
            "INSERT INTO deployments (service, status, settings, created_at)"
            " VALUES (?, 'succeeded', ?, 1.0)",
            (service, settings),
        )
    db.execute("UPDATE services SET active_deployment = 3 WHERE name = 'web'")
    db.close()

    with Store.open(db_path, cipher=cipher) as store:
        assert [(d.id, d.folder) for d in store.deployments("web")] == [(3, 3), (1, 1)]
        record = store.get_service("web")
        assert record is not None
        assert record.active_deployment == 3
        # A pinned commit was never meant to be kept.
        assert record.settings.source.commit is None
        assert store.create_deployment("web", make_settings()).id == 4
        assert store.create_deployment("api", make_settings()).id == 3


def test_update_deployment_through_to_success(store: Store, web: str, clock: Clock) -> None:
    deployment = store.create_deployment(web, make_settings())
    clock.advance(1)
    fetching = store.update_deployment(web, deployment.id, status=DeploymentStatus.FETCHING)
    assert fetching.status is DeploymentStatus.FETCHING
    assert fetching.finished_at is None
    clock.advance(1)
    building = store.update_deployment(
        web, deployment.id, status=DeploymentStatus.BUILDING, revision="abc1234"
    )
    assert building.revision == "abc1234"
    assert building.finished_at is None
    clock.advance(1)
    done = store.update_deployment(web, deployment.id, status=DeploymentStatus.SUCCEEDED)
    assert done.finished_at == clock.now
    assert done.created_at == deployment.created_at
    assert done.revision == "abc1234"
    assert store.get_deployment(deployment.service, deployment.id) == done


def test_update_deployment_failed_build(store: Store, web: str, clock: Clock) -> None:
    deployment = store.create_deployment(web, make_settings())
    clock.advance(7)
    failed = store.update_deployment(
        web,
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
    assert store.get_deployment(deployment.service, deployment.id) == failed


def test_unset_fields_are_kept_and_none_clears(store: Store, web: str) -> None:
    deployment = store.create_deployment(web, make_settings())
    store.update_deployment(web, deployment.id, error="oops", revision="r1")
    kept = store.update_deployment(web, deployment.id, exit_code=UNSET, revision=UNSET)
    assert (kept.error, kept.revision) == ("oops", "r1")
    cleared = store.update_deployment(web, deployment.id, error=None)
    assert (cleared.error, cleared.revision) == (None, "r1")
    assert store.get_deployment(deployment.service, deployment.id) == cleared


def test_a_finished_deployment_keeps_its_status(store: Store, web: str, clock: Clock) -> None:
    deployment = store.create_deployment(web, make_settings())
    done = store.update_deployment(web, deployment.id, status=DeploymentStatus.SUCCEEDED)
    clock.advance(5)
    with pytest.raises(DeploymentFinished, match="already succeeded; it cannot become failed"):
        store.update_deployment(web, deployment.id, status=DeploymentStatus.FAILED, error="late")
    assert store.get_deployment(deployment.service, deployment.id) == done
    # The same status again changes nothing, finished_at included; other fields may be filled.
    again = store.update_deployment(
        web, deployment.id, status=DeploymentStatus.SUCCEEDED, output_tail=["ok"]
    )
    assert again.finished_at == done.finished_at
    assert again.output_tail == ("ok",)


def test_update_unknown_deployment(store: Store) -> None:
    store.create_service("web", make_settings())
    with pytest.raises(UnknownDeployment, match="'web' has no deployment 42"):
        store.update_deployment("web", 42, status=DeploymentStatus.FAILED)


def test_output_tail_must_be_lines(store: Store, web: str) -> None:
    deployment = store.create_deployment(web, make_settings())
    with pytest.raises(TypeError, match="sequence of lines"):
        store.update_deployment(web, deployment.id, output_tail="one string")


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
            deployment = store.update_deployment(deployment.service, deployment.id, status=status)
        made[status] = deployment
    clock.advance(60)

    failed = store.fail_interrupted_deployments("the daemon stopped during the deploy")

    unfinished = [made[status] for status in statuses[:4]]
    key = lambda d: (d.service, d.id)  # noqa: E731
    assert [key(d) for d in failed] == sorted(key(d) for d in unfinished)
    for deployment in failed:
        assert deployment.status is DeploymentStatus.FAILED
        assert deployment.error == "the daemon stopped during the deploy"
        assert deployment.finished_at == clock.now
        assert store.get_deployment(deployment.service, deployment.id) == deployment
    for status in statuses[4:]:
        assert store.get_deployment(made[status].service, made[status].id) == made[status]
    assert store.fail_interrupted_deployments("again") == []


def test_a_finished_deploy_forgets_the_variables_it_brought(store: Store, web: str) -> None:
    for status in (DeploymentStatus.SUCCEEDED, DeploymentStatus.FAILED):
        deployment = store.create_deployment(web, make_settings(), secrets={"KEY": "s3cr3t"})
        if status is DeploymentStatus.SUCCEEDED:
            store.activate_deployment(web, deployment.id)
        store.update_deployment(web, deployment.id, status=status)
        assert store.deployment_env(web, deployment.id) == {}
    assert {v.key: v.value for v in store.env(web)} == {"KEY": "s3cr3t"}
