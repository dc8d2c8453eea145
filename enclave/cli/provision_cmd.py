"""``enclave project provision``, ``enclave optout apply``, ``enclave reid ...`` and
``enclave keys rotate``: the custodian's provisioning commands (issue 5).

A thin layer over :mod:`pipelines.provision`; no rule lives here. Refusals are audited
(outcome ``denied``) after their transaction rolls back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.orm import Session

from enclave.cli._app import AS_OPTION, JSON_OPTION, actor_name, app, print_json
from enclave.cli.optout_cmd import optout_app
from enclave.cli.project_cmd import project_app
from enclave.config import Settings, load_settings
from enclave.errors import InputError
from enclave.state.db import session_scope

reid_app = typer.Typer(help="Re-identification of project pseudonyms (custodians, four eyes).",
                       no_args_is_help=True)
keys_app = typer.Typer(help="Key management (master key rotation).", no_args_is_help=True)
app.add_typer(reid_app, name="reid")
app.add_typer(keys_app, name="keys")

REASON = typer.Option(..., "--reason", help="The written reason, recorded in the audit log.")


@contextmanager
def _transaction(settings: Settings, as_user: str | None, action: str, obj: str,
                 project: str | None = None) -> Iterator[tuple[Session, str]]:
    from enclave.projects.service import audited_refusal

    settings.require_initialised()
    actor = actor_name(as_user)
    with audited_refusal(settings, actor=actor, action=action, obj=obj, project=project), \
            session_scope(settings) as session:
        yield session, actor


@project_app.command("provision")
def provision_cmd(code: str, as_user: str = AS_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Build the project's read-only extract (approved selection, opt-outs excluded, stage 2)."""
    from pipelines.provision import provision_project

    settings = load_settings()
    console = Console(stderr=True)
    with _transaction(settings, as_user, "project.provision", code, code) as (session, actor), \
            Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                     console=console, disable=as_json) as bar:
        task = bar.add_task(f"provisioning {code}", total=None)
        result = provision_project(session, settings, code=code, actor=actor,
                                   on_step=lambda msg: bar.update(task, description=msg))
    if as_json:
        print_json(result.to_dict())
        return
    table = Table("file", "years", "columns", "rows", "opt-out rows excluded", "opt-out people")
    for name, info in result.files.items():
        table.add_row(name, ", ".join(map(str, info["years"])), str(len(info["columns"])),
                      str(info["rows"]), str(info["optouts_excluded_rows"]),
                      str(info["optouts_excluded_people"]))
    out = Console()
    out.print(table)
    out.print(f"extract {result.extract_dir}: {result.rows} rows")
    for w in result.warnings:
        out.print(f"[yellow]representativeness warning[/]: {w['dimension']} {w['category']} "
                  f"shifts {w['abs_shift_pp']:+.2f} pp")


@optout_app.command("apply")
def apply_cmd(as_user: str = AS_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Remove people who opted out since provisioning from every active extract."""
    from pipelines.provision.later_optouts import apply_later_optouts

    settings = load_settings()
    with _transaction(settings, as_user, "optout.apply", "active extracts") as (session, actor):
        result = apply_later_optouts(session, settings, actor=actor)
    if as_json:
        print_json(result.to_dict())
        return
    if not result.enabled:
        typer.echo("apply_to_active_extracts is off in policies/optout.yaml; nothing done")
        return
    for p in result.projects:
        typer.echo(f"{p['project']}: removed {p.get('removed_rows', 0)} rows, "
                   f"{p.get('removed_people', 0)} people" + (f" ({p['skipped']})" if "skipped" in p else ""))


@reid_app.command("request")
def reid_request_cmd(
    code: str,
    pseudonyms: list[str] = typer.Option(
        [], "--pseudonym", "-p",
        help="A project pseudonym to re-identify (repeatable; an option because a pseudonym "
             "may begin with '-')."),
    from_file: Path = typer.Option(None, "--from-file", help="A file with one pseudonym per line."),
    reason: str = REASON,
    as_user: str = AS_OPTION,
) -> None:
    """File a re-identification request (custodian); a second custodian must approve it."""
    from pipelines.provision import reidentify

    settings = load_settings()
    pseudonyms = list(pseudonyms)
    if from_file is not None:
        if not from_file.is_file():
            raise InputError(f"{from_file}: no such file")
        pseudonyms += [line.strip() for line in from_file.read_text(encoding="utf-8").splitlines()
                       if line.strip()]
    with _transaction(settings, as_user, "reid.request", code, code) as (session, actor):
        row = reidentify.request(session, settings, actor=actor, code=code,
                                 pseudonyms=pseudonyms, reason=reason)
        number = row.id
    typer.echo(f"re-identification request {number} filed; awaiting a second custodian")


@reid_app.command("approve")
def reid_approve_cmd(request_id: int, reason: str = REASON, as_user: str = AS_OPTION,
                     reject: bool = typer.Option(False, "--reject", help="Reject instead.")) -> None:
    """Approve (or --reject) a request as the second person, never the requester."""
    from pipelines.provision import reidentify

    settings = load_settings()
    with _transaction(settings, as_user, "reid.approve", f"reid:{request_id}") as (session, actor):
        row = reidentify.decide(session, settings, actor=actor, request_id=request_id,
                                approve=not reject, reason=reason)
        status = row.status
    typer.echo(f"re-identification request {request_id}: {status}")


@reid_app.command("resolve")
def reid_resolve_cmd(request_id: int, as_user: str = AS_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Resolve an approved request; the identifiers are shown once."""
    from pipelines.provision import reidentify

    settings = load_settings()
    with _transaction(settings, as_user, "reid.resolve", f"reid:{request_id}") as (session, actor):
        result = reidentify.resolve(session, settings, actor=actor, request_id=request_id)
    if as_json:
        print_json({"request": result.request_id, "identifiers": result.identifiers,
                    "unresolved": result.unresolved, "file": str(result.path)})
        return
    for item in result.identifiers:
        typer.echo(f"{item['pseudonym']}  {item['kind']}  {item['identifier'] or '-'}")
    if result.unresolved:
        typer.echo(f"not found in this project: {len(result.unresolved)}")
    typer.echo(f"kept in {result.path} (custodian only)")


@reid_app.command("list")
def reid_list_cmd(project: str = typer.Option(None, "--project"), as_json: bool = JSON_OPTION) -> None:
    """Re-identification requests and their status."""
    from pipelines.provision import reidentify

    settings = load_settings()
    settings.require_initialised()
    with session_scope(settings) as session:
        rows = reidentify.list_requests(session, project=project)
    if as_json:
        print_json(rows)
        return
    table = Table("id", "project", "status", "requested by", "decided by", "pseudonyms", "reason")
    for r in rows:
        table.add_row(str(r["id"]), r["project"], r["status"], r["requested_by"],
                      r["decided_by"] or "-", str(r["pseudonyms"]), r["reason"])
    Console().print(table)


@keys_app.command("rotate")
def rotate_cmd(as_user: str = AS_OPTION) -> None:
    """Create a new master key and re-wrap every data key and project key (no data re-hashed)."""
    from enclave import audit
    from enclave.keys import KeyStore, project_wrapped_keys
    from enclave.roles import Role
    from enclave.users import require

    settings = load_settings()
    with _transaction(settings, as_user, "keys.rotate", "master") as (session, actor):
        who = require(session, actor, Role.CUSTODIAN)
        keys = KeyStore.for_home(settings.keys_dir)
        projects = project_wrapped_keys(keys)
        new_id = keys.rotate_master(extra_wrapped=projects)
        audit.record(session, settings, actor=who.username, role=Role.CUSTODIAN.value,
                     action="keys.rotate", obj="master",
                     details={"master_key_id": new_id, "project_keys_rewrapped": len(projects)})
    typer.echo(f"master key rotated (id {new_id}); {len(projects)} project key(s) re-wrapped")
