"""Errors of the ingest pipeline."""

from __future__ import annotations

from enclave.errors import EnclaveError, InputError


class IngestError(InputError):
    """A source file or folder cannot be ingested at all (names the file and the reason)."""


class ValidatorDisagreement(EnclaveError):
    """great-expectations and the compiled rules disagree: fail closed, nothing is published."""

    exit_code = 5


class TokenCollisionError(EnclaveError):
    """Two different identifiers produced the same stage-1 token (fail closed)."""

    exit_code = 5


class SpanAborted(IngestError):
    """A span was stopped because the batch no longer needs it (e.g. already ingested)."""
