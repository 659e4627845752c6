"""The embedded SQLite store: what should run, with which settings, environment and release.

Open it with :meth:`Store.open`; every method is one transaction. Secret environment
variables are sealed with AES-256-GCM by a :class:`Cipher` (see :mod:`dployr.store.secrets`
for where its key comes from), and API tokens are kept only as SHA-256 digests.
"""

from dployr.store.errors import (
    DeploymentFinished,
    DiskFull,
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
from dployr.store.records import ProcessRecord, ServiceRecord, TokenRecord
from dployr.store.reserve import DiskReserve
from dployr.store.schema import SCHEMA_VERSION
from dployr.store.secrets import KEY_ENV, KEY_FILE_NAME, Cipher
from dployr.store.store import DB_FILE_NAME, SECRET_MASK, TOKEN_PREFIX, UNSET, Store

__all__ = [
    "DB_FILE_NAME",
    "KEY_ENV",
    "KEY_FILE_NAME",
    "SCHEMA_VERSION",
    "SECRET_MASK",
    "TOKEN_PREFIX",
    "UNSET",
    "Cipher",
    "DeploymentFinished",
    "DiskFull",
    "DiskReserve",
    "InvalidTokenName",
    "MasterKeyError",
    "ProcessRecord",
    "SchemaTooNew",
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
