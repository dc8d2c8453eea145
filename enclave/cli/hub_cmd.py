"""``enclave hub``: run the notebook hub; ``enclave hub overnight ...``: overnight runs."""

from __future__ import annotations

import os
import signal
from datetime import date

import typer

from enclave.cli._app import AS_OPTION, JSON_OPTION, actor_name, app, print_json
from enclave.config import load_settings
from enclave.errors import InputError

hub_app = typer.Typer(help="The notebook hub (JupyterHub) of the on-site workspace.", no_args_is_help=False)
overnight_app = typer.Typer(
    help="Overnight runs: a server kept past closing time, billed per run.", no_args_is_help=True
)
hub_app.add_typer(overnight_app, name="overnight")
app.add_typer(hub_app, name="hub")


@hub_app.callback(invoke_without_command=True)
def hub_cmd(
    ctx: typer.Context,
    port: int = typer.Option(8000, "--port", help="Port of the hub's public URL (127.0.0.1)."),
    dev_no_netns: bool = typer.Option(
        False,
        "--dev-no-netns",
        help="DEVELOPMENT ONLY: start servers without a network namespace when none can be made.",
    ),
    scheduler_interval: float = typer.Option(60.0, "--tick", help="Seconds between scheduler ticks."),
) -> None:
    """Start JupyterHub with its proxy on 127.0.0.1:PORT until interrupted (Ctrl-C)."""
    if ctx.invoked_subcommand is not None:
        return
    serve(load_settings(), port=port, dev_no_netns=dev_no_netns, scheduler_interval=scheduler_interval)


def serve(
    settings,
    *,
    port: int = 8000,
    dev_no_netns: bool = False,
    scheduler_interval: float = 60.0,
    login_hint: str = "log in with an enclave researcher account that is a member of an active project",
) -> None:
    """Run the hub in the foreground until Ctrl-C or SIGTERM, then stop its servers and mounts."""
    from enclave.hub import app as hub_runner

    if os.geteuid() != 0:
        typer.secho(
            "warning: not root; researcher servers need root to create Unix users, "
            "namespaces and mounts, so every start will be refused",
            err=True,
            fg=typer.colors.YELLOW,
        )
    procs = hub_runner.start(settings, port=port, dev_no_netns=dev_no_netns, scheduler_interval=scheduler_interval)
    typer.echo(f"hub: {procs.config.url}  (log: {procs.config.path.parent / 'jupyterhub.log'})")
    typer.echo(login_hint)
    if dev_no_netns:
        typer.secho("DEVELOPMENT MODE: servers may run without network isolation", fg=typer.colors.RED)
    # SIGTERM (service managers) stops the hub like Ctrl-C: its servers and mounts are cleaned up.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        procs.hub.wait()
    except KeyboardInterrupt:
        typer.echo("stopping the hub")
    finally:
        procs.stop()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


@overnight_app.command("register")
def register_cmd(
    project: str,
    night: str = typer.Option(None, "--night", help="Date of the evening (YYYY-MM-DD); default tonight."),
    user: str = typer.Option(None, "--user", help="Whose server runs overnight (default: the actor)."),
    as_user: str = AS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Register an overnight run for PROJECT (the researcher, or a custodian for them)."""
    from enclave import clock
    from enclave.hub import usage

    actor = actor_name(as_user)
    try:
        day = date.fromisoformat(night) if night else clock.local_now().date()
    except ValueError:
        raise InputError(f"--night {night!r} is not a date (YYYY-MM-DD)") from None
    run = usage.register_overnight(load_settings(), project=project, night=day, username=user or actor, actor=actor)
    if as_json:
        print_json({"id": run.id, "project": run.project, "night": run.night, "username": run.username})
    else:
        typer.echo(f"overnight run #{run.id}: {run.username} in {run.project}, night of {run.night} (billed per run)")


@overnight_app.command("list")
def list_cmd(project: str = typer.Option(None, "--project"), as_json: bool = JSON_OPTION) -> None:
    """List registered overnight runs."""
    from enclave.hub import usage

    runs = usage.overnight_runs(load_settings(), project=project)
    if as_json:
        print_json(
            [
                {
                    "id": r.id,
                    "project": r.project,
                    "night": r.night,
                    "username": r.username,
                    "registered_by": r.registered_by,
                    "billed": r.billed,
                }
                for r in runs
            ]
        )
        return
    for r in runs:
        typer.echo(f"#{r.id}  {r.night}  {r.project}  {r.username}  {'billed' if r.billed else 'pending'}")
