"""``enclave accounts review/confirm/depart``: account hygiene and separation of duties."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from enclave.cli._app import AS_OPTION, JSON_OPTION, actor_name, app, print_json
from enclave.config import load_settings
from enclave.state.db import session_scope

accounts_app = typer.Typer(help="Account hygiene: re-reviews, idle and departed accounts.",
                           no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")


@accounts_app.command("review")
def review_cmd(
    apply: bool = typer.Option(False, "--apply", help="Disable idle accounts and researchers "
                               "whose projects have all ended (custodian)."),
    as_user: str = AS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """List grants due for re-review, idle accounts, ended access and duty conflicts."""
    from enclave.accounts_review import run_review

    settings = load_settings()
    with session_scope(settings) as session:
        findings = [f.as_dict() for f in run_review(session, settings,
                                                   actor=actor_name(as_user), apply=apply)]
    if as_json:
        print_json(findings)
        return
    table = Table("kind", "user", "detail", "disabled" if apply else "would disable")
    for f in findings:
        table.add_row(str(f["kind"]), str(f["username"]), str(f["detail"]),
                      "yes" if f["disable"] else "")
    Console(width=160).print(table)


@accounts_app.command("confirm")
def confirm_cmd(
    username: str, role: str,
    supervisor: str = typer.Option(..., "--supervisor", help="Who re-approved the grant."),
    as_user: str = AS_OPTION,
) -> None:
    """Record the 6-monthly re-review of one grant (custodian)."""
    from enclave.accounts_review import confirm_grant

    settings = load_settings()
    with session_scope(settings) as session:
        confirm_grant(session, settings, actor=actor_name(as_user), username=username,
                      role=role, supervisor=supervisor)
    typer.echo(f"{username}: {role} re-reviewed")


@accounts_app.command("depart")
def depart_cmd(
    username: str,
    reason: str = typer.Option(..., "--reason", help="departed, retired, reassigned ..."),
    as_user: str = AS_OPTION,
) -> None:
    """A person left: disable the account and remove them from their projects (custodian)."""
    from enclave.accounts_review import depart

    settings = load_settings()
    with session_scope(settings) as session:
        removed = depart(session, settings, actor=actor_name(as_user), username=username,
                         reason=reason)
    typer.echo(f"{username} disabled; removed from {', '.join(removed) or 'no project'}")
