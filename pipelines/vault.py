"""The pseudonymized vault: layout, atomic publication of batches, and reading it back.

Layout: ``vault/batch=<name>/file=<FILE>/year=<YYYY>/part-<n>.parquet``. A batch is staged
under ``tmp/`` and published by a single directory rename, so readers see all of a batch or
none of it. Only batches recorded as committed in the state store count; a published
directory without its record (a crash between rename and commit) is removed on the next run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave.config import Settings
from enclave.state.models import IngestBatch


def quote(name: str) -> str:
    """A DuckDB-quoted identifier."""
    return '"' + name.replace('"', '""') + '"'


def parquet_source(paths: list[Path]) -> str:
    """A DuckDB ``read_parquet([...])`` table expression over ``paths`` (quoted)."""
    listed = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
    return f"read_parquet([{listed}])"


def batch_dir(settings: Settings, batch: str) -> Path:
    return settings.vault_dir / f"batch={batch}"


def escrow_dir(settings: Settings) -> Path:
    return settings.home / "escrow"


def committed_batches(session: Session) -> list[str]:
    rows = session.execute(
        select(IngestBatch.name).where(IngestBatch.status == "committed").order_by(IngestBatch.id)
    ).scalars()
    return list(rows)


def file_paths(
    settings: Settings, session: Session, file: str, years: list[int] | None = None
) -> list[Path]:
    """Parquet files of one source file type (optionally some years) in committed batches."""
    paths: list[Path] = []
    for batch in committed_batches(session):
        root = batch_dir(settings, batch) / f"file={file}"
        if not root.is_dir():
            continue
        for year_dir in sorted(root.glob("year=*")):
            year = int(year_dir.name.split("=", 1)[1])
            if years is None or year in years:
                paths.extend(sorted(year_dir.glob("*.parquet")))
    return paths


def publish(staged: Path, target: Path) -> None:
    """Move a fully written staging directory into place with one rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        raise FileExistsError(f"{target} exists already")
    os.replace(staged, target)


def remove_uncommitted(settings: Settings, session: Session) -> list[str]:
    """Delete published batch folders that have no committed record (interrupted runs)."""
    committed = set(committed_batches(session))
    removed = []
    for root in (settings.vault_dir, settings.quarantine_dir, escrow_dir(settings)):
        if not root.is_dir():
            continue
        for path in root.glob("batch=*"):
            name = path.name.split("=", 1)[1]
            if name not in committed:
                shutil.rmtree(path)
                removed.append(str(path))
    return removed
