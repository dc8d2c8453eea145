"""The ``enclave`` command line (Typer). Each capability registers its own sub-app here.

Deliberate errors (:class:`enclave.errors.EnclaveError`) become one line on stderr and the
error's exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import typer

from enclave.cli import _app
from enclave.errors import EnclaveError

app = _app.app


def _register() -> None:
    # Imported for their side effect of adding commands to ``app``; one module per capability.
    from enclave.cli import (  # noqa: F401
        accounts_cmd,
        audit_cmd,
        billing_cmd,
        catalog_cmd,
        export_cmd,
        home_cmd,
        hub_cmd,
        ingest_cmd,
        optout_cmd,
        project_cmd,
        provision_cmd,
        review_cmd,
        synth_cmd,
        user_cmd,
    )


def main() -> None:
    """Console-script entry point."""
    _register()
    try:
        # Standalone mode: usage errors print click's message and exit 2 by themselves.
        app()
    except EnclaveError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(exc.exit_code)
