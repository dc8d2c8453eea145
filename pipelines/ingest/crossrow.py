"""Rules that need more than one row, run in DuckDB over the staged Parquet: primary-key
uniqueness (within the batch and against the committed vault), orders without their claim
(hard: quarantined), soft references and parent/child sum invariants (reported)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from catalog import Catalog
from catalog.model import FileDef


@dataclass
class CrossRowOutcome:
    rejected: list[tuple[str, int, str, str, str]] = field(default_factory=list)
    """(source file, line, rule, column(s), detail)."""
    warnings: list[dict] = field(default_factory=list)


def connect_duckdb(spill_dir: Path, memory_limit: str = "1GB") -> duckdb.DuckDBPyConnection:
    """An explicit in-memory DuckDB connection with bounded memory; beyond it, DuckDB spills to
    ``spill_dir`` (inside the batch's custodian-only staging area, never the working folder)."""
    con = duckdb.connect(":memory:")
    con.execute(f"SET memory_limit='{memory_limit}'")
    con.execute(f"SET temp_directory='{spill_dir / '.duckdb-spill'}'")
    con.execute("SET preserve_insertion_order=false")
    return con


def line_table(rows: list[tuple]) -> pa.Table:
    """The (``_source``, ``_line``) pairs of rejected rows (file name, line first) as a table
    to anti-join staged rows against."""
    return pl.DataFrame(
        {"_source": [r[0] for r in rows], "_line": [r[1] for r in rows]},
        schema={"_source": pl.String, "_line": pl.Int64},
    ).to_arrow()


def _scan(paths: list[Path]) -> str:
    quoted = ", ".join(f"'{p}'" for p in paths)
    return f"read_parquet([{quoted}], union_by_name=true, hive_partitioning=false)"


def _key(cols: list[str], alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(f'{prefix}"{c}"' for c in cols)


def _join(cols: list[str], left: str, right: str, right_cols: list[str] | None = None) -> str:
    right_cols = right_cols or cols
    return " AND ".join(
        f'{left}."{a}" IS NOT DISTINCT FROM {right}."{b}"' for a, b in zip(cols, right_cols, strict=True)
    )


# Hashes sorted in one pass: 256 MiB of them, as much again for the sorted copy.
HASHES_PER_PASS = 32 << 20


def repeated_key_hashes(
    con: duckdb.DuckDBPyConnection, paths: list[Path], key: list[str], per_pass: int = HASHES_PER_PASS
) -> pl.DataFrame:
    """``_source`` and ``_line`` of the rows of ``paths`` whose 64-bit hash of the ``key``
    columns occurs more than once: the only rows that can repeat a key.

    DuckDB hashes the key columns; the hashes are sorted (NumPy) and neighbours compared,
    instead of a hash aggregate whose table holds every distinct key (10 M rows: 0.2 to 0.5 s,
    against 1.9 CPU-s for the aggregate). More than ``per_pass`` rows are split into passes by the hashes' top
    bits (equal hashes share them), so memory stays bounded whatever the batch size.
    """
    source, digest = _scan(paths), f"hash({_key(key)})"
    total = con.sql(f"SELECT count(*) FROM {source}").fetchall()[0][0]
    bits = (max(1, -(-total // per_pass)) - 1).bit_length()
    repeated = []
    for part in range(1 << bits):
        where = f" WHERE {digest} >> {64 - bits} = {part}" if bits else ""
        hashes = con.sql(f"SELECT {digest} AS h FROM {source}{where}").to_arrow_table().column("h")
        ordered = np.sort(hashes.to_numpy())
        same = ordered[1:] == ordered[:-1]
        if same.any():
            repeated.append(np.unique(ordered[1:][same]))
    if not repeated:
        return pl.DataFrame(schema={"_source": pl.String, "_line": pl.Int64})
    con.register("repeated_hashes", pa.table({"h": np.concatenate(repeated)}))
    try:
        return con.sql(
            f"SELECT _source, _line FROM {source} WHERE {digest} IN (SELECT h FROM repeated_hashes)"
        ).pl()
    finally:
        con.unregister("repeated_hashes")


def duplicate_keys(
    con: duckdb.DuckDBPyConnection,
    definition: FileDef,
    staged: list[Path],
    committed: list[Path],
) -> list[tuple[str, int, str, str, str]]:
    """Rows repeating a primary key seen earlier (in file order) or already in the vault.

    Only rows whose key hash repeats (:func:`repeated_key_hashes`) are compared on their full
    keys; a hash collision is harmless because the full keys decide.
    """
    if not staged:
        return []
    pk = definition.primary_key
    candidates = repeated_key_hashes(con, staged, pk)
    rows: list = []
    if candidates.height:
        con.register("candidates", candidates.to_arrow())
        source = (
            f"(SELECT s.* FROM {_scan(staged)} s SEMI JOIN candidates c "
            "ON s._source = c._source AND s._line = c._line)"
        )
        # Find the repeated keys with a hash aggregate first (cheap); only their rows are ranked.
        rows = con.execute(f"""
            WITH s AS (SELECT {_key(pk)}, _source, _order, _line FROM {source}),
            dup AS (SELECT {_key(pk)} FROM s GROUP BY ALL HAVING count(*) > 1),
            ranked AS (
                SELECT s.*, row_number() OVER w AS rn, first_value(s._line) OVER w AS first_line,
                       first_value(s._source) OVER w AS first_source
                FROM s SEMI JOIN dup ON {_join(pk, "s", "dup")}
                WINDOW w AS (PARTITION BY {_key(pk, "s")} ORDER BY s._order, s._line))
            SELECT _source, _line, 'repeats the key of ' || first_source || ' line ' || first_line
            FROM ranked WHERE rn > 1
        """).fetchall()
        con.unregister("candidates")
    out = [(src, int(line), "duplicate_key", "+".join(pk), detail) for src, line, detail in rows]
    if committed:
        rows = con.execute(f"""
            SELECT s._source, s._line FROM {_scan(staged)} s
            SEMI JOIN (SELECT {_key(pk)} FROM {_scan(committed)}) v ON {_join(pk, "s", "v")}
        """).fetchall()
        out += [(src, int(line), "duplicate_key", "+".join(pk), "key already in the vault") for src, line in rows]
    return out


def missing_parents(
    con: duckdb.DuckDBPyConnection,
    definition: FileDef,
    staged: list[Path],
    parent_paths: list[Path],
    parent_rejected: list[tuple[str, int, str, str, str]] = (),  # type: ignore[assignment]
) -> list[tuple[str, int, str, str, str]]:
    """Order rows whose claim is neither in this batch (accepted) nor in the vault.

    ``parent_rejected`` are parent rows this pass is quarantining; they do not count.
    """
    if not staged or definition.parent is None:
        return []
    cols = definition.parent.columns
    con.register("parent_rejected", line_table(parent_rejected))
    if parent_paths:
        sql = f"""
            SELECT c._source, c._line FROM {_scan(staged)} c
            ANTI JOIN (SELECT DISTINCT {_key(cols)} FROM {_scan(parent_paths)} p
                       ANTI JOIN parent_rejected r ON p._source = r._source AND p._line = r._line) p
            ON {_join(cols, "c", "p")}"""
    else:
        sql = f"SELECT _source, _line FROM {_scan(staged)}"
    return [
        (
            src,
            int(line),
            "missing_parent",
            "+".join(cols),
            f"no {definition.parent.file} row with this claim key",
        )
        for src, line in con.execute(sql).fetchall()
    ]


def references(
    con: duckdb.DuckDBPyConnection,
    definition: FileDef,
    staged: list[Path],
    targets: dict[str, list[Path]],
    catalog: Catalog,
    soft_action: str = "report",
    already_rejected: list[tuple[str, int, str, str, str]] = (),  # type: ignore[assignment]
) -> tuple[list[tuple[str, int, str, str, str]], list[dict]]:
    """Rows whose reference does not resolve.

    ``severity: error`` references quarantine the row (``unknown_code`` when the target is a
    reference/code file such as the drug list, else ``unresolved_reference``); ``warn``
    references are counted and reported with sample lines, or quarantined like errors when
    ``soft_action`` is ``quarantine`` (the ingest policy's ``soft_reference_action``).
    Rows in ``already_rejected`` (e.g. duplicate keys) are neither counted nor rejected again.
    """
    rejected: list[tuple[str, int, str, str, str]] = []
    warnings: list[dict] = []
    if not staged:
        return rejected, warnings
    con.register("ref_exclude", line_table(already_rejected))
    rows_left = f"{_scan(staged)} c ANTI JOIN ref_exclude x ON c._source = x._source AND c._line = x._line"
    for ref in definition.references:
        target = targets.get(ref.file, [])
        where = ""
        if ref.where:
            clauses = [f'c."{col}" IN ({", ".join(repr(v) for v in vals)})' for col, vals in ref.where.items()]
            where = "AND " + " AND ".join(clauses)
        present = " AND ".join(f'c."{col}" IS NOT NULL' for col in ref.columns)
        unresolved = ""
        if target:
            unresolved = (
                f"AND NOT EXISTS (SELECT 1 FROM {_scan(target)} t "
                f"WHERE {_join(ref.columns, 'c', 't', ref.file_columns)})"
            )
        detail = f"{'+'.join(ref.columns)} not found in {ref.file}.{'+'.join(ref.file_columns)}"
        if ref.severity == "error" or soft_action == "quarantine":
            rule = "unknown_code" if catalog.file(ref.file).kind == "reference" else "unresolved_reference"
            rows = con.execute(
                f"SELECT c._source, c._line FROM {rows_left} WHERE {present} {where} {unresolved}"
            ).fetchall()
            rejected += [(src, int(line), rule, "+".join(ref.columns), detail) for src, line in rows]
            continue
        count, sample = con.execute(
            f"SELECT count(*), min(c._line, 10) FROM {rows_left} WHERE {present} {where} {unresolved}"
        ).fetchall()[0]
        if count:
            warnings.append(
                {
                    "rule": "unresolved_reference",
                    "severity": ref.severity,
                    "detail": detail,
                    "rows": int(count),
                    "sample_lines": [int(x) for x in (sample or [])],
                }
            )
    con.unregister("ref_exclude")
    return rejected, warnings


def child_sums(
    con: duckdb.DuckDBPyConnection,
    definition: FileDef,
    staged: list[Path],
    parent_paths: list[Path],
) -> list[dict]:
    """Parent/child sum invariants (e.g. Σ drug order points = claim drug points)."""
    warnings = []
    if definition.parent is None or not staged or not parent_paths:
        return warnings
    cols = definition.parent.columns
    for inv in definition.invariants:
        if inv.child_sum is None:
            continue
        cs = inv.child_sum
        where = ""
        if cs.where:
            where = "WHERE " + " AND ".join(
                f'"{col}" IN ({", ".join(repr(v) for v in vals)})' for col, vals in cs.where.items()
            )
        count = con.execute(f"""
            WITH c AS (SELECT {_key(cols)}, sum("{cs.column}") AS total FROM {_scan(staged)} {where}
                       GROUP BY {_key(cols)})
            SELECT count(*) FROM {_scan(parent_paths)} p JOIN c ON {_join(cols, "p", "c")}
            WHERE c.total IS DISTINCT FROM p."{cs.parent_column}"
        """).fetchall()[0][0]
        if count:
            warnings.append(
                {
                    "rule": f"invariant:{inv.name}",
                    "severity": inv.severity,
                    "detail": inv.description.en,
                    "rows": int(count),
                    "sample_lines": [],
                }
            )
    return warnings


def run(
    definitions: list[FileDef],
    catalog: Catalog,
    staged: dict[str, list[Path]],
    committed: dict[str, list[Path]],
    *,
    spill_dir: Path,
    soft_reference_action: str = "report",
) -> dict[str, CrossRowOutcome]:
    """Cross-row rules for every file type of the batch, parents before children.

    ``staged`` maps file type → staged Parquet paths; ``committed`` the vault's paths.
    Parent keys of children are checked against the parents' accepted rows (after their own
    duplicate removal the key still exists, so only quarantined parents orphan children).
    """
    con = connect_duckdb(spill_dir)
    outcomes: dict[str, CrossRowOutcome] = {}
    for definition in definitions:
        outcome = CrossRowOutcome()
        paths = staged.get(definition.name, [])
        outcome.rejected += duplicate_keys(con, definition, paths, committed.get(definition.name, []))
        targets = {ref.file: staged.get(ref.file, []) + committed.get(ref.file, []) for ref in definition.references}
        bad_refs, ref_warnings = references(
            con, definition, paths, targets, catalog, soft_reference_action, outcome.rejected
        )
        outcome.rejected += bad_refs
        outcome.warnings += ref_warnings
        if definition.parent is not None:
            parents = staged.get(definition.parent.file, []) + committed.get(definition.parent.file, [])
            parent_outcome = outcomes.get(definition.parent.file)
            outcome.rejected += missing_parents(
                con, definition, paths, parents, parent_outcome.rejected if parent_outcome else []
            )
            outcome.warnings += child_sums(con, definition, paths, parents)
        outcomes[definition.name] = outcome
    con.close()
    return outcomes
