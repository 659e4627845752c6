"""The embedded SQLite store: what should run, with which settings, environment and release.

Open it with :meth:`Store.open`; every method is one transaction. Secret environment
variables are sealed with AES-256-GCM by a :class:`Cipher` (see :mod:`dployr.store.secrets`
for where its key comes from), and API tokens are kept only as SHA-256 digests, with their
scope and expiry.
"""

from dployr.store.base import DB_FILE_NAME, SECRET_MASK, TOKEN_PREFIX, UNSET
from dployr.store.errors import (
    DeploymentFinished,
    DiskFull,
    InvalidToken,
    InvalidTokenName,
    MasterKeyError,
    SchemaTooNew,
    ServiceExists,
    StoreError,
    TokenExists,
    UnknownDeployment,
    UnknownService,
    UnknownToken,
    WrongMasterKey,
)
from dployr.store.records import AuditRecord, ProcessRecord, Scope, ServiceRecord, TokenRecord
from dployr.store.reserve import DiskReserve
from dployr.store.schema import SCHEMA_VERSION
from dployr.store.secrets import KEY_ENV, KEY_FILE_NAME, Cipher
from dployr.store.store import Store

__all__ = [
    "DB_FILE_NAME",
    "KEY_ENV",
    "KEY_FILE_NAME",
    "SCHEMA_VERSION",
    "SECRET_MASK",
    "TOKEN_PREFIX",
    "UNSET",
    "AuditRecord",
    "Cipher",
    "DeploymentFinished",
    "DiskFull",
    "DiskReserve",
    "InvalidToken",
    "InvalidTokenName",
    "MasterKeyError",
    "ProcessRecord",
    "SchemaTooNew",
    "Scope",
    "ServiceExists",
    "ServiceRecord",
    "Store",
    "StoreError",
    "TokenExists",
    "TokenRecord",
    "UnknownDeployment",
    "UnknownService",
    "UnknownToken",
    "WrongMasterKey",
]
