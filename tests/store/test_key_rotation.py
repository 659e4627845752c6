"""Rotating the master key: every secret re-sealed, the key file replaced, crashes settled."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dployr.store import Cipher, MasterKeyError, Store, WrongMasterKey
from dployr.store.secrets import KEY_FILE_NAME, parse_key, rotation_file
from tests.store.conftest import make_settings


def fill(store: Store) -> None:
    store.create_service("web", make_settings())
    store.set_env("web", {"PLAIN": "p"})
    store.set_env("web", {"TOKEN": "t0ken", "OTHER": "0ther"}, secret=True)
    # A deploy in progress carries secrets of its own, sealed too.
    store.create_deployment("web", make_settings(), secrets={"NEXT": "n3xt"})
    store.set_git_credential("web", "https://me:***@example.com/app.git", "pa55word")


def secrets_of(store: Store) -> dict[str, str]:
    values = {v.key: v.value for v in store.env("web")}
    values.update(store.deployment_env("web", 1))
    credential = store.git_credential("web")
    assert credential is not None
    values["git"] = credential[1]
    return values


def test_rotation_reseals_every_secret_under_a_new_key_file(tmp_path: Path) -> None:
    db_path = tmp_path / "dployr.db"
    key_file = tmp_path / KEY_FILE_NAME
    with Store.open(db_path, cipher=Cipher.from_key_file(key_file)) as store:
        fill(store)
        before = key_file.read_bytes()
        assert store.rotate_key() == 4
        assert key_file.read_bytes() != before
        assert not rotation_file(key_file).exists()
        assert os.stat(key_file).st_mode & 0o777 == 0o600
        assert secrets_of(store) == {
            "PLAIN": "p",
            "TOKEN": "t0ken",
            "OTHER": "0ther",
            "NEXT": "n3xt",
            "git": "pa55word",
        }
    # The old key opens nothing any more; the new key file opens everything.
    with pytest.raises(WrongMasterKey):
        Store.open(db_path, cipher=Cipher(parse_key(before.decode(), "the old key")))
    with Store.open(db_path, cipher=Cipher.from_key_file(key_file)) as store:
        assert secrets_of(store)["TOKEN"] == "t0ken"


def test_a_key_from_the_environment_is_not_rotated(tmp_path: Path) -> None:
    with Store.open(tmp_path / "dployr.db", cipher=Cipher.generate()) as store:
        fill(store)
        with pytest.raises(MasterKeyError, match="which dployr cannot change"):
            store.rotate_key()
        assert secrets_of(store)["TOKEN"] == "t0ken"


# A rotation killed at a chosen point: before the commit, or after it but before the key
# file is replaced. Either way the store opens again with every secret readable.
CRASH = """
import os, sys
from pathlib import Path
from dployr.store import Cipher, Store
from dployr.store import secrets, store as store_module
point = sys.argv[2]
original = secrets.finish_rotation
if point == "before-commit":
    store_module.Store._write = lambda self: os._exit(9)
else:
    secrets.finish_rotation = lambda path: os._exit(9)
folder = Path(sys.argv[1])
s = Store.open(folder / "dployr.db", cipher=Cipher.from_key_file(folder / "master.key"))
s.rotate_key()
"""


def only_a_git_password(store: Store) -> None:
    store.create_service("web", make_settings())
    store.set_git_credential("web", "https://me:***@example.com/app.git", "pa55word")


def git_password(store: Store) -> str:
    credential = store.git_credential("web")
    assert credential is not None
    return credential[1]


@pytest.mark.parametrize("point", ["before-commit", "after-commit"])
@pytest.mark.parametrize("only_git", [False, True])
def test_a_rotation_cut_short_is_settled_when_the_store_opens(
    tmp_path: Path, point: str, only_git: bool
) -> None:
    key_file = tmp_path / KEY_FILE_NAME
    with Store.open(tmp_path / "dployr.db", cipher=Cipher.from_key_file(key_file)) as store:
        (only_a_git_password if only_git else fill)(store)
    before = key_file.read_bytes()
    done = subprocess.run(
        [sys.executable, "-c", CRASH, str(tmp_path), point], check=False, timeout=60
    )
    assert done.returncode == 9
    assert rotation_file(key_file).exists()
    assert key_file.read_bytes() == before

    with Store.open(tmp_path / "dployr.db", cipher=Cipher.from_key_file(key_file)) as store:
        assert git_password(store) == "pa55word"
        if not only_git:
            assert secrets_of(store)["TOKEN"] == "t0ken"
    assert not rotation_file(key_file).exists()
    assert (key_file.read_bytes() == before) is (point == "before-commit")
