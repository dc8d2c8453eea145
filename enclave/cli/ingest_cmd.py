"""``enclave ingest SRC_DIR``: source files into the pseudonymized vault."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from enclave.cli._app import AS_OPTION, JSON_OPTION, actor_name, app, print_json
from enclave.config import load_settings


@app.command("ingest")
def ingest_cmd(
    src_dir: Path = typer.Argument(..., help="Folder of source files named as the catalog expects."),
    batch: str = typer.Option(None, "--batch", help="Batch name (default: from the files' checksums)."),
    encoding: str = typer.Option(None, "--encoding", help="utf-8 or big5 (default: detect per file)."),
    as_user: str = AS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Validate, quarantine, pseudonymize (stage 1) and publish a batch of source files."""
    from pipelines.ingest import ingest_directory

    settings = load_settings()
    settings.require_initialised()
    console = Console(stderr=True)
    lines: dict[str, int] = {}
    sizes: dict[str, int] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=as_json,
    ) as bar:
        tasks: dict[str, int] = {}

        def progress(name: str, read: int, nbytes: int) -> None:
            # Bytes against the file's size give a true fraction before the lines are known.
            if name not in tasks:
                sizes[name] = (src_dir / name).stat().st_size
                tasks[name] = bar.add_task(name, total=sizes[name])
            lines[name] = lines.get(name, 0) + read
            bar.update(tasks[name], advance=nbytes, description=f"{name} {lines[name]:,} lines")

        result = ingest_directory(
            settings, src_dir, actor=actor_name(as_user), batch_name=batch, encoding=encoding, progress=progress
        )
        for name, task in tasks.items():  # the header line is part of no chunk
            bar.update(task, completed=sizes[name])
    if as_json:
        data = result.to_dict()
        for f in data["files"]:
            f.pop("validation", None)
        print_json(data)
        return
    table = Table("file", "status", "read", "accepted", "quarantined", "reconciled", "quarantined by rule")
    for f in result.files:
        table.add_row(
            f.source_file,
            f.status,
            str(f.rows_read),
            str(f.rows_accepted),
            str(f.rows_quarantined),
            "yes" if f.reconciled else "NO",
            ", ".join(f"{k} {v}" for k, v in f.quarantined_by_rule.items()),
        )
    out = Console()
    out.print(table)
    out.print(f"batch {result.batch}: {result.status}; report {result.report or '-'}")
    if result.ignored:
        out.print(f"not recognised (ignored): {', '.join(result.ignored)}")
