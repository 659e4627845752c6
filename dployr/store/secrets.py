"""Secrets at rest: AES-256-GCM under one 32-byte master key per data dir.

Where the master key comes from (the first that is set wins):

1. the environment variable ``DPLOYR_MASTER_KEY``: 32 bytes written either as 64 hex digits
   or as base64 (standard or URL-safe alphabet, padding optional: 43 or 44 characters, e.g.
   the output of ``openssl rand -base64 32``). An empty value counts as unset.
2. the key file ``<data dir>/master.key``, in the same text format (dployr writes base64 and a
   newline). It is created on first use with mode 0600, atomically: written and synced under a
   temporary name, then hard-linked into place, which never replaces an existing file — so a
   crash leaves either no key file or a whole one, and two processes racing agree on one key.
   A key file that other users could read or write, or that another user owns, is refused.

A sealed value is ``b"\\x01"`` (the format version), a fresh 12-byte random nonce, then the
ciphertext with its 16-byte GCM tag. The caller binds each value to where it belongs through
the associated data (the store uses the service name and the variable's key), so a sealed
value copied to another service or key no longer decrypts.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dployr.store.errors import MasterKeyError, WrongMasterKey

KEY_ENV = "DPLOYR_MASTER_KEY"
"""The environment variable that may carry the master key."""
KEY_FILE_NAME = "master.key"
"""The key file's name inside the data dir, used when ``DPLOYR_MASTER_KEY`` is unset."""
KEY_BYTES = 32
NONCE_BYTES = 12
_TAG_BYTES = 16
_FORMAT = b"\x01"
_KEY_FORMATS = (
    "32 bytes written as 64 hex digits or as base64 (44 characters, "
    "e.g. the output of `openssl rand -base64 32`)"
)
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")


def parse_key(text: str, source: str) -> bytes:
    """The 32 key bytes written in ``text`` (hex or base64), else :class:`MasterKeyError`.

    ``source`` names where the text came from, for the error message.
    """
    text = text.strip()
    if _HEX_KEY.fullmatch(text):
        return bytes.fromhex(text)
    standard = text.replace("-", "+").replace("_", "/")
    standard += "=" * (-len(standard) % 4)
    try:
        key = base64.b64decode(standard, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise MasterKeyError(f"the master key in {source} must be {_KEY_FORMATS}")
    return key


class Cipher:
    """Seals and opens text values with AES-256-GCM under one master key.

    Build one with :meth:`from_environment` (what the daemon does), :meth:`from_key_file`,
    or directly from 32 key bytes. The key never appears in the object's repr.
    """

    def __init__(self, key: bytes, *, source: str = "the key given to dployr") -> None:
        if len(key) != KEY_BYTES:
            raise MasterKeyError(f"the master key must be {KEY_BYTES} bytes, not {len(key)}")
        self._key = key
        self._sealer: AESGCM | None = None
        self.source = source
        """Where the key came from, as shown in error messages."""
        self.key_file: Path | None = None
        """The key file the key was read from, if it was (not from the environment)."""

    def __repr__(self) -> str:
        return f"<Cipher from {self.source}>"

    @property
    def _aead(self) -> AESGCM:
        # Imported on first use: a daemon whose services have no secret never pays the
        # seven megabytes of the cryptography package.
        if self._sealer is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._sealer = AESGCM(self._key)
        return self._sealer

    @classmethod
    def generate(cls) -> Cipher:
        """A cipher under a new random key (that nothing remembers: for tests)."""
        return cls(os.urandom(KEY_BYTES), source="a random key")

    @classmethod
    def from_environment(cls, data_dir: Path, environ: Mapping[str, str] | None = None) -> Cipher:
        """The cipher under ``$DPLOYR_MASTER_KEY``, else under ``<data_dir>/master.key``.

        The key file is created (mode 0600) if it does not exist yet.
        """
        environ = os.environ if environ is None else environ
        text = environ.get(KEY_ENV, "")
        if text.strip():
            return cls(parse_key(text, KEY_ENV), source=KEY_ENV)
        return cls.from_key_file(data_dir / KEY_FILE_NAME)

    @classmethod
    def from_key_file(cls, path: Path) -> Cipher:
        """The cipher under the key in ``path``, creating the file with a new key if missing."""
        try:
            text = _read_key_file(path)
        except FileNotFoundError:
            _create_key_file(path)
            text = _read_key_file(path)
        cipher = cls(parse_key(text, str(path)), source=str(path))
        cipher.key_file = path
        return cipher

    def encrypt(self, plaintext: str, associated_data: bytes) -> bytes:
        """``plaintext`` sealed under a fresh nonce and bound to ``associated_data``."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), associated_data)
        return _FORMAT + nonce + sealed

    def decrypt(self, sealed: bytes, associated_data: bytes) -> str:
        """The text sealed by :meth:`encrypt` with the same key and associated data.

        Raises :class:`WrongMasterKey` when the value does not open: another key sealed it,
        or it was altered, or it was moved from where it belongs.
        """
        if len(sealed) < 1 + NONCE_BYTES + _TAG_BYTES or sealed[:1] != _FORMAT:
            raise WrongMasterKey("a stored secret is malformed (not a dployr sealed value)")
        from cryptography.exceptions import InvalidTag

        nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, associated_data).decode("utf-8")
        except InvalidTag:
            raise WrongMasterKey(
                f"a stored secret does not decrypt with the master key from {self.source}: "
                "it was encrypted with another key, or it was altered"
            ) from None


def _read_key_file(path: Path) -> str:
    """The key file's text, after checking that only its owner (this user) can use it."""
    try:
        # O_NONBLOCK: a FIFO planted as the key file must not hang the daemon.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise MasterKeyError(f"cannot read the master key file {path}: {error.strerror}") from None
    try:
        _check_key_file(path, os.fstat(fd))
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise MasterKeyError(f"the master key in {path} must be {_KEY_FORMATS}") from None


def _check_key_file(path: Path, info: os.stat_result) -> None:
    """Refuse a key file that is not a regular file private to this user."""
    if not stat.S_ISREG(info.st_mode):
        raise MasterKeyError(f"the master key file {path} is not a regular file")
    if info.st_uid != os.geteuid():
        raise MasterKeyError(
            f"the master key file {path} belongs to another user (uid {info.st_uid}); "
            "dployr only uses a key file owned by the user it runs as"
        )
    if info.st_mode & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        raise MasterKeyError(
            f"the master key file {path} can be used by other users (mode {mode:04o}); "
            f"make it private with `chmod 600 {path}`, and consider the key exposed"
        )


def _create_key_file(path: Path) -> None:
    """Write a new random key to ``path`` with mode 0600, unless a key file appears first."""
    text = base64.b64encode(os.urandom(KEY_BYTES)) + b"\n"
    temporary = path.with_name(f".{path.name}.{os.urandom(8).hex()}.tmp")
    try:
        fd = os.open(
            temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
        )
    except OSError as error:
        raise MasterKeyError(
            f"cannot create the master key file {path}: {error.strerror}"
        ) from None
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o600)  # the umask may only remove bits; be exact
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        # link() never replaces an existing file: whoever links first wins, the other
        # process reads the winner's key.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a new directory entry durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rotation_file(path: Path) -> Path:
    """Where a new key waits (``master.key.new``) while secrets are re-sealed under it."""
    return path.with_name(path.name + ".new")


def prepare_rotation(path: Path) -> Cipher:
    """Write a new random key beside the key file ``path``; return its cipher.

    The key file itself is replaced (:func:`finish_rotation`) only once every secret is
    sealed under the new key: a crash in between leaves the old key in place and the new
    one beside it, and :class:`~dployr.store.Store` finishes or undoes the rotation when
    it opens, whichever the database says.
    """
    new = rotation_file(path)
    with contextlib.suppress(FileNotFoundError):
        new.unlink()  # what an earlier rotation left, never used
    _create_key_file(new)
    cipher = Cipher(parse_key(_read_key_file(new), str(path)), source=str(path))
    cipher.key_file = path
    return cipher


def finish_rotation(path: Path) -> None:
    """Put the new key in the key file's place, atomically, and make it durable."""
    os.replace(rotation_file(path), path)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
