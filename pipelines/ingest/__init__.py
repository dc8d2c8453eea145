"""Ingest: source files in, pseudonymized Parquet vault out.

Stages, each a module: ``sources`` (recognise files by the catalog, checksums, encoding),
``decode`` (bytes → string columns in bounded chunks; undecodable and malformed lines become
structural faults), ``rules`` (row-level validation compiled from the catalog into Polars
expressions), ``expectations`` (the same rules as great-expectations suites, run on each
column's distinct values and cross-checked against ``rules``), ``tokens`` (stage-1 keyed
hashing and the encrypted escrow), ``crossrow`` (key uniqueness and referential integrity in
DuckDB), ``quarantine`` (rejected rows with file, line, rule and value), ``report`` and
``batch`` (the orchestration: staging, atomic publish, reconciliation, audit).
"""

from typing import TYPE_CHECKING

from pipelines.ingest.errors import IngestError

if TYPE_CHECKING:
    from pipelines.ingest.batch import BatchResult, ingest_directory

__all__ = ["BatchResult", "IngestError", "ingest_directory"]


def __getattr__(name: str):
    # Lazy: worker processes import only the stages they run, not the orchestration (DuckDB,
    # SQLAlchemy, great-expectations), which saves most of a second per worker start.
    if name in ("BatchResult", "ingest_directory"):
        from pipelines.ingest import batch

        return getattr(batch, name)
    raise AttributeError(f"module 'pipelines.ingest' has no attribute {name!r}")
