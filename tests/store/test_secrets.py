"""Secrets at rest: AES-256-GCM, the master key's sources, and its key file's safety."""

from __future__ import annotations

import base64
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from dployr.models import EnvVar
from dployr.store import KEY_ENV, Cipher, MasterKeyError, Store, WrongMasterKey
from dployr.store.secrets import parse_key
from tests.store.conftest import make_settings

PLAINTEXT = "correct-horse-battery-staple-4f9a2c"
KEY = bytes(range(32))


def database_bytes(db_path: Path) -> bytes:
    """Everything SQLite wrote: the database file and its write-ahead log, if any."""
    files = [db_path, db_path.with_name(db_path.name + "-wal")]
    return b"".join(path.read_bytes() for path in files if path.exists())


def test_secret_values_never_reach_the_database_files(db_path: Path, cipher: Cipher) -> None:
    with Store.open(db_path, cipher=cipher) as store:
        store.create_service("web", make_settings())
        store.set_env("web", {"PLAIN_ONE": "plain-value-7d1e0b"})
        store.set_env("web", {"SECRET_ONE": PLAINTEXT}, secret=True)
        wal = db_path.with_name("dployr.db-wal")
        assert wal.exists()
        written = database_bytes(db_path)
        # The check itself works: the plain value is there to be found.
        assert b"plain-value-7d1e0b" in written
        assert PLAINTEXT.encode() not in written
        assert PLAINTEXT.encode("utf-16-le") not in written
    # After close SQLite checkpoints the log into the database file.
    written = database_bytes(db_path)
    assert b"plain-value-7d1e0b" in written
    assert PLAINTEXT.encode() not in written


def test_each_seal_uses_a_fresh_nonce(cipher: Cipher) -> None:
    one = cipher.encrypt(PLAINTEXT, b"ad")
    two = cipher.encrypt(PLAINTEXT, b"ad")
    assert one != two
    assert one[1:13] != two[1:13]
    assert cipher.decrypt(one, b"ad") == cipher.decrypt(two, b"ad") == PLAINTEXT


def test_a_sealed_value_is_bound_to_its_associated_data(cipher: Cipher) -> None:
    sealed = cipher.encrypt(PLAINTEXT, b"dployr env\x00web\x00A")
    with pytest.raises(WrongMasterKey):
        cipher.decrypt(sealed, b"dployr env\x00web\x00B")
    with pytest.raises(WrongMasterKey, match="malformed"):
        cipher.decrypt(b"\x01short", b"")


def test_secrets_decrypt_after_reopening_with_the_same_key(db_path: Path) -> None:
    with Store.open(db_path, cipher=Cipher(KEY)) as store:
        store.create_service("web", make_settings())
        store.set_env("web", {"DB_PASSWORD": PLAINTEXT}, secret=True)
    with Store.open(db_path, cipher=Cipher(KEY)) as store:
        assert store.env("web") == [EnvVar("DB_PASSWORD", PLAINTEXT, secret=True)]


def test_a_wrong_key_is_refused_when_opening(db_path: Path) -> None:
    with Store.open(db_path, cipher=Cipher(KEY)) as store:
        store.create_service("web", make_settings())
        store.set_env("web", {"DB_PASSWORD": PLAINTEXT}, secret=True)
    wrong = Cipher(bytes(32), source="the wrong key")
    with pytest.raises(WrongMasterKey, match="the master key from the wrong key does not"):
        Store.open(db_path, cipher=wrong)


def test_a_wrong_key_opens_a_database_without_secrets(db_path: Path) -> None:
    with Store.open(db_path, cipher=Cipher(KEY)) as store:
        store.create_service("web", make_settings())
        store.set_env("web", {"PLAIN": "1"})
    with Store.open(db_path, cipher=Cipher(bytes(32))) as store:
        assert store.env("web") == [EnvVar("PLAIN", "1")]


def test_a_secret_moved_to_another_key_does_not_decrypt(db_path: Path, cipher: Cipher) -> None:
    with Store.open(db_path, cipher=cipher) as store:
        store.create_service("web", make_settings())
        store.set_env("web", {"A": "alpha", "B": "beta"}, secret=True)
        with sqlite3.connect(db_path) as other:
            other.execute(
                "UPDATE env SET sealed = (SELECT sealed FROM env WHERE key = 'A') WHERE key = 'B'"
            )
        other.close()
        with pytest.raises(WrongMasterKey, match="cannot decrypt the secret B of service 'web'"):
            store.env("web")
        # Listing needs no decryption.
        assert [v.key for v in store.env_listing("web")] == ["A", "B"]


@pytest.mark.parametrize(
    "text",
    [
        KEY.hex(),
        KEY.hex().upper(),
        base64.b64encode(KEY).decode(),
        base64.urlsafe_b64encode(KEY).decode().rstrip("="),
        f"  {base64.b64encode(KEY).decode()}\n",
    ],
)
def test_key_formats(text: str) -> None:
    assert parse_key(text, "test") == KEY


@pytest.mark.parametrize(
    "text",
    ["", "short", KEY.hex()[:-2], base64.b64encode(bytes(31)).decode(), "é" * 44, "0x" + KEY.hex()],
)
def test_bad_keys_are_refused(text: str) -> None:
    with pytest.raises(MasterKeyError, match="must be 32 bytes written as 64 hex digits or"):
        parse_key(text, KEY_ENV)


def test_the_environment_key_comes_first(tmp_path: Path) -> None:
    cipher = Cipher.from_environment(tmp_path, {KEY_ENV: KEY.hex()})
    assert cipher.source == KEY_ENV
    assert Cipher(KEY).decrypt(cipher.encrypt("x", b""), b"") == "x"
    assert not (tmp_path / "master.key").exists()


def test_the_key_file_is_created_private_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    old_umask = os.umask(0)  # the file must be private whatever the umask
    try:
        with Store.open(tmp_path / "dployr.db") as store:
            store.create_service("web", make_settings())
            store.set_env("web", {"SECRET": PLAINTEXT}, secret=True)
    finally:
        os.umask(old_umask)
    key_file = tmp_path / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(parse_key(key_file.read_text(), "file")) == 32
    assert stat.S_IMODE((tmp_path / "dployr.db").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    with Store.open(tmp_path / "dployr.db") as store:
        assert store.env("web") == [EnvVar("SECRET", PLAINTEXT, secret=True)]
    assert Cipher.from_environment(tmp_path, {KEY_ENV: ""}).source == str(key_file)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606])
def test_a_key_file_others_can_use_is_refused(
    tmp_path: Path, mode: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    key_file = tmp_path / "master.key"
    Cipher.from_key_file(key_file)
    key_file.chmod(mode)
    with pytest.raises(MasterKeyError, match=rf"mode {mode:04o}.*chmod 600 {key_file}"):
        Cipher.from_key_file(key_file)
    with pytest.raises(MasterKeyError, match="can be used by other users"):
        Store.open(tmp_path / "dployr.db")


def test_a_garbled_key_file_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    key_file.write_bytes(b"\xff\xfe not a key")
    key_file.chmod(0o600)
    with pytest.raises(MasterKeyError, match=f"the master key in {key_file} must be"):
        Cipher.from_key_file(key_file)


def test_a_key_file_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "master.key").mkdir(mode=0o700)
    with pytest.raises(MasterKeyError, match="not a regular file"):
        Cipher.from_key_file(tmp_path / "master.key")


def test_the_cipher_repr_hides_the_key() -> None:
    assert KEY.hex() not in repr(Cipher(KEY))
    assert repr(Cipher(KEY, source="somewhere")) == "<Cipher from somewhere>"
