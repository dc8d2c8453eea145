"""``enclave user add/list/disable/grant``: personal accounts and their roles."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from enclave.cli._app import AS_OPTION, JSON_OPTION, actor_name, app, print_json
from enclave.cli.home_cmd import _password_from
from enclave.config import load_settings
from enclave.errors import InputError
from enclave.state.db import session_scope

user_app = typer.Typer(help="Personal accounts and roles.", no_args_is_help=True)
app.add_typer(user_app, name="user")


@user_app.command("add")
def add_cmd(
    username: str,
    role: list[str] = typer.Option(
        ..., "--role", help="custodian, steward, reviewer, researcher or auditor (repeatable)."
    ),
    full_name: str = typer.Option(..., "--full-name"),
    unit: str = typer.Option(..., "--unit", help="The person's institution or department."),
    email: str = typer.Option(None, "--email"),
    supervisor: str = typer.Option(None, "--supervisor", help="Who approved this grant."),
    password_stdin: bool = typer.Option(False, "--password-stdin"),
    as_user: str = AS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a personal account (custodian only)."""
    from enclave.users import add_user, user_summary

    password = _password_from(password_stdin, "ENCLAVE_NEW_PASSWORD", f"Password for {username}")
    if not password:
        raise InputError("give a password (--password-stdin or ENCLAVE_NEW_PASSWORD)")
    settings = load_settings()
    with session_scope(settings) as session:
        user = add_user(
            session,
            settings,
            actor=actor_name(as_user),
            username=username,
            full_name=full_name,
            unit=unit,
            roles=role,
            password=password,
            email=email,
            supervisor=supervisor,
        )
        summary = user_summary(user)
    if as_json:
        print_json(summary)
    else:
        typer.echo(f"added {username} ({', '.join(summary['roles'])})")


@user_app.command("grant")
def grant_cmd(username: str, role: str, as_user: str = AS_OPTION) -> None:
    """Give an account one more role (separation-of-duties rules apply)."""
    from enclave.users import grant_role

    settings = load_settings()
    with session_scope(settings) as session:
        grant_role(session, settings, actor=actor_name(as_user), username=username, role=role)
    typer.echo(f"granted {role} to {username}")


@user_app.command("list")
def list_cmd(
    active: bool = typer.Option(False, "--active", help="Only active accounts."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List accounts with their roles and status."""
    from enclave.users import list_users, user_summary

    settings = load_settings()
    with session_scope(settings) as session:
        rows = [user_summary(u) for u in list_users(session, include_disabled=not active)]
    if as_json:
        print_json(rows)
        return
    table = Table("user", "name", "unit", "roles", "status", "last login")
    for row in rows:
        table.add_row(
            str(row["username"]),
            str(row["full_name"]),
            str(row["unit"]),
            ", ".join(row["roles"]),
            str(row["status"]),
            str(row["last_login_at"] or "-"),
        )
    Console().print(table)


@user_app.command("disable")
def disable_cmd(
    username: str,
    reason: str = typer.Option(..., "--reason", help="Why (departed, reassigned, idle ...)."),
    as_user: str = AS_OPTION,
) -> None:
    """Disable an account; it stays on the roster."""
    from enclave.users import disable_user

    settings = load_settings()
    with session_scope(settings) as session:
        disable_user(session, settings, actor=actor_name(as_user), username=username, reason=reason)
    typer.echo(f"disabled {username}")
