"""Errors of the provisioning pipeline (all :class:`enclave.errors.EnclaveError` subclasses)."""

from __future__ import annotations

from enclave.errors import EnclaveError, InputError, PermissionDenied


class ProvisionError(EnclaveError):
    """Provisioning could not build the extract (the message names the file, year or rule)."""

    exit_code = 3


class Stage2CollisionError(ProvisionError):
    """Two stage-1 tokens map to one stage-2 pseudonym."""


class SelectionError(InputError):
    """The project's approved selection names a file or column the catalog or vault lacks."""


class ProjectNotProvisionable(PermissionDenied):
    """The project's status does not allow an extract (e.g. closed, rejected, still in review)."""


class ReidError(PermissionDenied):
    """A re-identification step was refused (names the request and the rule)."""
