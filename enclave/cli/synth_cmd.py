"""``enclave synth-source``: write synthetic NHI source files (CSV) for tests and demos."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import Progress

from enclave.cli._app import JSON_OPTION, app, print_json


def _years(text: str) -> list[int]:
    from pipelines.synth.generate import SynthError

    try:
        if ".." in text:
            a, b = text.split("..")
            return list(range(int(a), int(b) + 1))
        return [int(text)]
    except ValueError as exc:
        raise SynthError(f"--years {text!r}: use YYYY or YYYY..YYYY") from exc


@app.command("synth-source")
def synth_source(
    out: Path = typer.Argument(..., help="Output folder."),
    people: int = typer.Option(..., "--people", help="Population size."),
    years: str = typer.Option(..., "--years", help="Data year YYYY or range YYYY..YYYY."),
    seed: int = typer.Option(..., "--seed", help="Random seed (same seed: identical bytes)."),
    encoding: str = typer.Option("utf-8", "--encoding", help="utf-8 or big5 (cp950)."),
    defects: float = typer.Option(0.0, "--defects", help="Share of rows with one known fault."),
    optout_share: float = typer.Option(0.02, "--optout-share", help="Share of people opted out."),
    files: str = typer.Option(None, "--files", help="Comma-separated file names (default all)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Generate synthetic source files exactly as the catalog defines them."""
    from pipelines.synth.generate import generate_source

    names = [f.strip() for f in files.split(",")] if files else None
    with Progress(disable=as_json) as bar:
        task = bar.add_task("people", total=people)
        summary = generate_source(
            out, people=people, years=_years(years), seed=seed, encoding=encoding,
            defect_rate=defects, optout_share=optout_share, files=names,
            progress=lambda done, total: bar.update(task, completed=done),
        )  # fmt: skip
    if as_json:
        print_json(summary.to_dict())
    else:
        for name, n in summary.rows.items():
            typer.echo(f"{name}: {n} rows")
        typer.echo(
            f"defects: {summary.defects}; opt-out spike month: {summary.optout['spike_month']}"
        )
