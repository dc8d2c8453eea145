"""Errors raised by the disclosure checker; each names the file, key or project at fault."""

from __future__ import annotations

from enclave.errors import InputError, NotFound, PolicyError


class OutputInputError(InputError):
    """An output file given to the checker cannot be checked (exit code 2)."""


class UnreadableOutputError(OutputInputError):
    """The file is missing, of an unsupported type, or cannot be decoded."""


class EmptyTableError(OutputInputError):
    """A table has no data rows, so there is nothing that could be checked."""


class ManifestError(OutputInputError):
    """The export manifest is malformed or names a file that was not given."""


class DisclosurePolicyError(PolicyError):
    """``policies/disclosure.yaml`` or a ``--policy`` override holds an invalid key or value."""


class UnknownProjectError(NotFound):
    """``--project`` names a project the checker cannot resolve."""
