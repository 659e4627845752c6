"""Errors the store raises on purpose, each with a message a user can act on."""

from __future__ import annotations

from dployr.errors import DployrError, SpecError


class StoreError(DployrError):
    """The database could not be opened, read or written."""


class DiskFull(StoreError):
    """The database could not be written: the disk is full."""


class SchemaTooNew(StoreError):
    """The database was written by a newer dployr than this one."""


class UnknownService(StoreError):
    """No service has that name."""


class ServiceExists(StoreError):
    """A service with that name already exists."""


class UnknownDeployment(StoreError):
    """No deployment has that id."""


class DeploymentFinished(StoreError):
    """The deployment has already ended, so its status can no longer change."""


class UnknownToken(StoreError):
    """No API token has that name."""


class TokenExists(StoreError):
    """An API token with that name already exists."""


class MasterKeyError(StoreError):
    """The master key for secrets is missing, malformed or not safely stored."""


class WrongMasterKey(MasterKeyError):
    """A secret could not be decrypted: the master key is not the one it was sealed with."""


class InvalidTokenName(SpecError):
    """An API token name that dployr refuses."""
