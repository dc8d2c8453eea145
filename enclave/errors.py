"""The project's exception tree: one base error, specific subclasses a user can act on.

Every error raised on purpose by enclave code derives from :class:`EnclaveError`; the CLI
turns these into a one-line message and a non-zero exit code, never a traceback.
"""

from __future__ import annotations


class EnclaveError(Exception):
    """Base class of every deliberate enclave error."""

    exit_code = 1


class ConfigError(EnclaveError):
    """The configuration (settings file, environment, policy file) is missing or invalid."""

    exit_code = 2


class PolicyError(ConfigError):
    """A policy file under ``policies/`` is missing a key or holds an invalid value."""


class NotInitialisedError(EnclaveError):
    """The enclave home does not exist yet; run ``enclave init`` first."""

    exit_code = 2


class StateError(EnclaveError):
    """The state store is unreachable, or its schema is not at the expected revision."""


class PermissionDenied(EnclaveError):
    """The acting user may not do this (missing role, disabled account, wrong project)."""

    exit_code = 4


class SeparationOfDutiesError(PermissionDenied):
    """A separation-of-duties rule forbids this combination of person, role and object."""


class NotFound(EnclaveError):
    """A named user, project, file or record does not exist."""

    exit_code = 2


class AlreadyExists(EnclaveError):
    """A user, project or record with this name exists already."""

    exit_code = 2


class AuditChainError(EnclaveError):
    """The audit chain failed verification; the message names the first bad entry."""

    exit_code = 5


class InputError(EnclaveError):
    """Bad input from a user or a source file (names the file, row and rule)."""

    exit_code = 2


class ScreeningRefused(PermissionDenied):
    """Content may not pass between the browser and a workspace (:mod:`enclave.workspace.screening`).

    The message names the file, the part refused and the policy key (or rule) that refused it.

    Attributes
    ----------
    file : str
        The contents-API path of the file.
    part : str
        What was refused: ``"the file"``, ``"cell 3 output 1"``, ``"notebook metadata"``...
    key : str
        The policy key (``max_upload_kb``...) or, for rules without one, the rule's name
        (``identifiers``, ``contents_model``); also a short reason label for logs and metrics.
    """

    def __init__(self, message: str, *, file: str, part: str, key: str) -> None:
        super().__init__(message)
        self.file = file
        self.part = part
        self.key = key
