"""``enclave init`` and ``enclave status``: create and describe the enclave home."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from enclave.cli._app import JSON_OPTION, app, print_json
from enclave.config import load_settings
from enclave.errors import InputError


def _password_from(stdin: bool, env_var: str, prompt: str) -> str | None:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    if os.environ.get(env_var):
        return os.environ[env_var]
    if sys.stdin.isatty():
        return typer.prompt(prompt, hide_input=True, confirmation_prompt=True)
    return None


@app.command("init")
def init_cmd(
    home: Path = typer.Option(None, "--home", help="Enclave home (default $ENCLAVE_HOME or ./.enclave)."),
    admin: str = typer.Option(None, "--admin", help="User name of the first custodian."),
    admin_full_name: str = typer.Option("", "--admin-full-name"),
    admin_unit: str = typer.Option("", "--admin-unit"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the custodian's password from stdin."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create the enclave home: folders, settings, database schema, keys, first custodian."""
    from enclave.home import init_home

    settings = load_settings(home)
    password = None
    if admin:
        password = _password_from(password_stdin, "ENCLAVE_ADMIN_PASSWORD", "Custodian password")
        if not password:
            raise InputError("give the custodian's password (--password-stdin or ENCLAVE_ADMIN_PASSWORD)")
    result = init_home(
        settings,
        admin_username=admin,
        admin_full_name=admin_full_name,
        admin_unit=admin_unit,
        admin_password=password,
    )
    payload = {
        "home": str(result.home),
        "created": result.created,
        "keys_created": result.keys_created,
        "admin_created": result.admin_created,
        "database": settings.database_url,
    }
    if as_json:
        print_json(payload)
        return
    verb = "created" if result.created else "up to date"
    typer.echo(f"enclave home {result.home}: {verb}")
    if result.keys_created:
        typer.echo(f"  keys created: {', '.join(result.keys_created)} (never printed)")
    if result.admin_created:
        typer.echo(f"  first custodian: {result.admin_created}")


@app.command("status")
def status_cmd(home: Path = typer.Option(None, "--home"), as_json: bool = JSON_OPTION) -> None:
    """Describe the enclave home: where state lives and whether the audit chain verifies."""
    from enclave import audit
    from enclave.state.db import session_scope
    from enclave.users import list_users

    settings = load_settings(home)
    settings.require_initialised()
    with session_scope(settings) as session:
        result = audit.verify(session, settings)
        users = list_users(session)
    payload = {
        "home": str(settings.home),
        "database": settings.database_url,
        "policies": str(settings.policies_dir),
        "users": len(users),
        "audit": result.as_dict(),
    }
    if as_json:
        print_json(payload)
        return
    for key, value in payload.items():
        typer.echo(f"{key:9} {value}")


@app.command("demo")
def demo_cmd(
    people: int = typer.Option(3000, "--people", help="Synthetic population size."),
    hub: bool = typer.Option(True, "--hub/--no-hub", help="Start JupyterHub at the end."),
    port: int = typer.Option(8000, "--port"),
    real_hours: bool = typer.Option(
        False, "--real-hours", help="Keep the service centre's opening hours (default: demo opens all day)."
    ),
) -> None:
    """Build a demo enclave on synthetic data (idempotent), then start the hub."""
    from enclave.demo import build_demo

    result = build_demo(
        load_settings(),
        people=people,
        open_all_hours=not real_hours,
        progress=lambda msg: typer.secho(f"· {msg}", fg="cyan"),
    )
    settings = result.settings
    for step in result.steps:
        typer.echo(f"  ✓ {step}")
    typer.echo(f"\nenclave home: {result.home}\nproject: {result.project}\n\ndemo accounts (demo passwords only):")
    for username, roles, password in result.accounts:
        typer.echo(f"  {username:10} {roles:12} {password}")
    if not hub:
        return
    from enclave.cli.hub_cmd import serve

    chen = next(a for a in result.accounts if a[0] == "chen.wei")
    serve(settings, port=port, login_hint=f"log in as chen.wei / {chen[2]} (project {result.project})")
