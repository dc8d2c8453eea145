"""The root Typer app and the helpers every command module shares (actor, JSON output)."""

from __future__ import annotations

import json
import os
from typing import Any

import typer

app = typer.Typer(
    name="enclave",
    help="Secure research-data enclave for national health-insurance claims data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def actor_name(explicit: str | None) -> str:
    """The acting user for audit: ``--as``, else ``$ENCLAVE_USER``; refuse if neither is set."""
    name = explicit or os.environ.get("ENCLAVE_USER")
    if not name:
        from enclave.errors import PermissionDenied

        raise PermissionDenied("who is acting? pass --as USER or set ENCLAVE_USER")
    return name


def print_json(payload: Any) -> None:
    """Print one JSON document on stdout (UTF-8, stable key order)."""
    typer.echo(json.dumps(payload, ensure_ascii=False, indent=2, sort_keys=True, default=str))


AS_OPTION = typer.Option(None, "--as", help="Acting user (default: $ENCLAVE_USER).")
JSON_OPTION = typer.Option(False, "--json", help="Print a JSON document instead of a table.")
