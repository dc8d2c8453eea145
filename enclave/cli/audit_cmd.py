"""``enclave audit verify`` and ``enclave audit log``."""

from __future__ import annotations

from datetime import datetime

import typer
from rich.console import Console
from rich.table import Table

from enclave.cli._app import AS_OPTION, JSON_OPTION, actor_name, app, print_json
from enclave.config import load_settings
from enclave.errors import AuditChainError, InputError
from enclave.state.db import session_scope

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


def _parse_time(value: str | None, option: str) -> datetime | None:
    if not value:
        return None
    try:
        from enclave.clock import LOCAL_ZONE

        moment = datetime.fromisoformat(value)
        return moment if moment.tzinfo else moment.replace(tzinfo=LOCAL_ZONE)
    except ValueError:
        raise InputError(f"{option} {value!r} is not an ISO date or date-time") from None


@audit_app.command("verify")
def verify_cmd(as_json: bool = JSON_OPTION) -> None:
    """Check the whole hash chain and the signed anchor; name the first bad entry."""
    from enclave import audit

    settings = load_settings()
    with session_scope(settings) as session:
        result = audit.verify(session, settings)
    if as_json:
        print_json(result.as_dict())
        if not result.ok:
            raise typer.Exit(AuditChainError.exit_code)
        return
    if not result.ok:
        raise AuditChainError(f"audit chain broken: {result.problem}")
    typer.echo(f"audit chain intact: {result.entries} entries")


@audit_app.command("log")
def log_cmd(
    actor: str = typer.Option(None, "--actor"),
    action: str = typer.Option(
        None, "--action", help="Action, '*' wildcards allowed (e.g. 'user.*')."
    ),
    project: str = typer.Option(None, "--project"),
    since: str = typer.Option(None, "--since", help="ISO date/time, inclusive."),
    until: str = typer.Option(None, "--until", help="ISO date/time, exclusive."),
    limit: int = typer.Option(200, "--limit", help="Newest N entries (0 = all)."),
    as_user: str = AS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """List audit entries (auditors and custodians), filtered."""
    from enclave import audit
    from enclave.roles import Role, check_may_audit
    from enclave.users import require

    settings = load_settings()
    with session_scope(settings) as session:
        who = require(session, actor_name(as_user), [Role.AUDITOR, Role.CUSTODIAN])
        exclude = None
        if Role.AUDITOR.value in who.roles:
            if actor:
                check_may_audit(who.username, actor)
            exclude = who.username  # an auditor's own entries are for another auditor
        flt = audit.AuditFilter(
            actor=actor,
            action=action,
            project=project,
            since=_parse_time(since, "--since"),
            until=_parse_time(until, "--until"),
            exclude_actor=exclude,
            limit=limit or None,
        )
        rows = [
            {
                k: getattr(r, k)
                for k in (
                    "seq",
                    "ts",
                    "actor",
                    "role",
                    "action",
                    "object",
                    "project",
                    "reason",
                    "outcome",
                    "details",
                )
            }
            for r in audit.entries(session, flt)
        ]
        audit.record(
            session,
            settings,
            actor=who.username,
            role=who.primary_role(Role.AUDITOR),
            action="audit.read",
            obj="audit_entries",
            details={
                "filter": {
                    "actor": actor,
                    "action": action,
                    "project": project,
                    "since": since,
                    "until": until,
                },
                "rows": len(rows),
            },
        )
    if as_json:
        print_json(rows)
        return
    table = Table("seq", "time", "actor", "role", "action", "object", "project", "outcome")
    for r in rows:
        table.add_row(
            str(r["seq"]),
            r["ts"][:19],
            r["actor"],
            r["role"],
            r["action"],
            (r["object"] or "")[:40],
            r["project"] or "",
            r["outcome"],
        )
    Console().print(table)
