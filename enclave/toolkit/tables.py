"""Safe-output helpers: tables that remember which units stand behind each cell.

:func:`crosstab` and :func:`summarise` build aggregate tables from row-level frames and keep,
for every row of the result, the set of contributing units as a Roaring bitmap of the
project's person (or institution) index. :func:`collapse_small` merges categories until no
cell is at or below the disclosure threshold (unions of the bitmaps, so counts stay exact)
and :func:`round_to` rounds counts. :func:`save_output` writes the table into the
workspace's ``outputs/`` folder together with the cell-membership sidecar
(``<file>.cells.parquet``) that the export request uses for the differencing check.

Bitmaps are built per cell from one exploded column (NumPy splits), never per row.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from pyroaring import BitMap

from disclosure_review.cells import write_cells
from disclosure_review.differencing import CellMembership
from enclave.errors import InputError
from enclave.toolkit._env import env_path
from enclave.toolkit.project import Project, open_project

UnitKind = Literal["person", "institution"]
OUTPUTS_FOLDER = "outputs"
_STATS = ("mean", "sd", "median", "sum", "min", "max")
_IDX = "__idx"


class SafeOutputError(InputError):
    """A safe-output helper was called with columns or options it cannot use."""


@dataclass(frozen=True)
class SafeTable:
    """An aggregate table and the units behind each of its rows.

    Attributes
    ----------
    table : polars.DataFrame
        The published table: dimension columns, then the count column, then statistics.
    members : tuple of BitMap
        ``members[i]`` holds the unit indexes behind row ``i`` of ``table``.
    dimensions : tuple of str
        The table's grouping columns.
    unit_kind : {"person", "institution"}
        What the bitmaps (and the count column) count.
    count_column : str
        Name of the distinct-unit count column.
    notes : tuple of str
        What was collapsed or rounded (shown to the reviewer in the purpose).
    """

    table: pl.DataFrame
    members: tuple[BitMap, ...]
    dimensions: tuple[str, ...]
    unit_kind: UnitKind = "person"
    count_column: str = "n"
    notes: tuple[str, ...] = field(default=())

    def __repr__(self) -> str:
        return f"SafeTable({self.table.height} cells by {', '.join(self.dimensions)})\n{self.table}"

    def _repr_html_(self) -> str:
        return self.table._repr_html_()

    def labels(self) -> list[str]:
        """``col=value, col=value`` label of each row (the sidecar's cell names)."""
        keys = self.table.select(self.dimensions).cast(pl.String).fill_null("null")
        return [", ".join(f"{d}={v}" for d, v in zip(self.dimensions, row, strict=True))
                for row in keys.iter_rows()]

    def cells(self, output_id: str) -> list[CellMembership]:
        """The rows as :class:`CellMembership` records of output ``output_id``."""
        return [CellMembership(output_id, label, self.unit_kind, bits)
                for label, bits in zip(self.labels(), self.members, strict=True)]

    def smallest(self) -> int:
        """The smallest count in the table (0 for an empty table)."""
        return min((len(b) for b in self.members), default=0)


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _with_index(frame: pl.DataFrame | pl.LazyFrame, unit: str, unit_kind: UnitKind,
                project: Project | None) -> pl.LazyFrame:
    lazy = frame.lazy()
    if unit not in lazy.collect_schema().names():
        raise SafeOutputError(f"unit column {unit!r} is not in the frame; pass unit=<column "
                              "holding the person (or institution) pseudonym>")
    project = project or open_project()
    index = project.person_index() if unit_kind == "person" else project.institution_index()
    index = index.select(pl.col("pseudonym").alias(unit), pl.col("idx").cast(pl.UInt32).alias(_IDX))
    return lazy.join(index, on=unit, how="left")


def _group(lazy: pl.LazyFrame, groups: list[str], aggs: list[pl.Expr], *, unit: str
           ) -> tuple[pl.DataFrame, tuple[BitMap, ...]]:
    grouped = (lazy.group_by(groups)
               .agg(pl.col(_IDX).null_count().alias("__unmatched"),
                    pl.col(_IDX).drop_nulls().unique().sort().alias("__units"), *aggs)
               .sort(groups, nulls_last=True)
               .collect())
    unmatched = int(grouped["__unmatched"].sum())
    if unmatched:
        raise SafeOutputError(
            f"{unmatched} row(s) have a {unit!r} value that is not a pseudonym of this project; "
            "cell membership cannot be recorded (use the extract's identifier column)")
    lengths = grouped["__units"].list.len().to_numpy()
    flat = grouped["__units"].explode().drop_nulls().to_numpy().astype(np.uint32)
    members = tuple(BitMap(chunk) for chunk in np.split(flat, np.cumsum(lengths)[:-1]))
    return grouped.drop("__unmatched", "__units"), members


def crosstab(frame: pl.DataFrame | pl.LazyFrame, rows: str | Sequence[str],
             cols: str | Sequence[str] | None = None, *, unit: str = "ID",
             unit_kind: UnitKind = "person", project: Project | None = None,
             count_name: str = "n") -> SafeTable:
    """Count distinct units per combination of ``rows`` and ``cols`` (long format).

    Parameters
    ----------
    frame : polars DataFrame or LazyFrame
        Row-level data holding the unit's pseudonym column.
    rows, cols : str or sequence of str
        The table's dimensions (``cols`` optional; the result is one row per cell).
    unit : str
        Column with the person (or institution) pseudonym; counts are distinct units.
    unit_kind : {"person", "institution"}
        Which index maps pseudonyms to bitmap positions.
    project : Project, optional
        Default: :func:`open_project` (``ENCLAVE_EXTRACT``).
    count_name : str
        Name of the count column (keep a name the checker reads as a count, e.g. ``n``).

    Returns
    -------
    SafeTable
        Dimensions and ``count_name``; the membership of each row.

    Raises
    ------
    SafeOutputError
        The unit column is missing or holds values that are not project pseudonyms.
    """
    groups = _as_list(rows) + _as_list(cols)
    if not groups:
        raise SafeOutputError("crosstab needs at least one dimension (rows=...)")
    lazy = _with_index(frame, unit, unit_kind, project)
    keys, members = _group(lazy, groups, [], unit=unit)
    table = keys.with_columns(pl.Series(count_name, [len(m) for m in members], dtype=pl.Int64))
    return SafeTable(table, members, tuple(groups), unit_kind, count_name)


def summarise(frame: pl.DataFrame | pl.LazyFrame, by: str | Sequence[str], value: str, *,
              stats: Sequence[str] = ("mean", "sd"), unit: str = "ID",
              unit_kind: UnitKind = "person", project: Project | None = None,
              count_name: str = "n") -> SafeTable:
    """Grouped statistics of ``value`` with the distinct-unit count of each group.

    Parameters
    ----------
    by : str or sequence of str
        Grouping columns.
    value : str
        Numeric column summarised over the rows of each group.
    stats : sequence of {"mean", "sd", "median", "sum", "min", "max"}
        Statistics, written as ``<value>_<stat>`` columns (names the checker recognises).
        ``min``/``max`` describe single records and usually fail the check.

    Returns
    -------
    SafeTable
        ``by`` columns, ``count_name`` and one column per statistic.
    """
    unknown = [s for s in stats if s not in _STATS]
    if unknown:
        raise SafeOutputError(f"unknown statistic(s) {unknown}; choose from {list(_STATS)}")
    col = pl.col(value).cast(pl.Float64)
    exprs = {"mean": col.mean(), "sd": col.std(), "median": col.median(), "sum": col.sum(),
             "min": col.min(), "max": col.max()}
    groups = _as_list(by)
    lazy = _with_index(frame, unit, unit_kind, project)
    keys, members = _group(lazy, groups, [exprs[s].alias(f"{value}_{s}") for s in stats],
                           unit=unit)
    counts = pl.Series(count_name, [len(m) for m in members], dtype=pl.Int64)
    table = keys.select(*groups).with_columns(counts).hstack(keys.drop(groups))
    return SafeTable(table, members, tuple(groups), unit_kind, count_name)


def default_threshold() -> int:
    """The disclosure threshold of the deployment (``ENCLAVE_POLICIES_DIR``) or the default."""
    from disclosure_review.policy import load_policy

    folder = os.environ.get("ENCLAVE_POLICIES_DIR")
    base = Path(folder) / "disclosure.yaml" if folder else None
    return load_policy(base=base if base and base.is_file() else None).threshold


def collapse_small(table: SafeTable, column: str, *, threshold: int | None = None,
                   label: str | None = None) -> SafeTable:
    """Merge categories of ``column`` until no cell counts ``threshold`` units or fewer.

    Categories with a small cell anywhere in the table are merged (in every row, so the
    table stays consistent) into one category; its cells are the unions of the merged
    cells' units, so counts stay exact and the membership stays true.

    Parameters
    ----------
    table : SafeTable
        From :func:`crosstab` (statistics other than the count are not recomputed, so
        collapse a crosstab, not a summary).
    column : str
        The dimension whose categories may be merged (e.g. an age group).
    threshold : int, optional
        A count must be more than this; default: the disclosure policy's ``threshold``.
    label : str, optional
        Name of the merged category; default: the merged names joined by ``/``.

    Returns
    -------
    SafeTable
        With a note naming the merged categories. Cells may still be small when only one
        category is left; the checker will then fail the output.
    """
    if column not in table.dimensions:
        raise SafeOutputError(f"{column!r} is not a dimension of the table "
                              f"({', '.join(table.dimensions)})")
    extra = [c for c in table.table.columns if c not in table.dimensions and c != table.count_column]
    if extra:
        raise SafeOutputError(f"collapse_small works on counts only; the table also has {extra}")
    limit = default_threshold() if threshold is None else threshold
    merged: set[str] = set()  # original categories folded into the merged one so far
    current = table
    while True:
        name = label or "/".join(sorted(merged))
        values = current.table[column].cast(pl.String).fill_null("null").to_list()
        small = {v for v, bits in zip(values, current.members, strict=True)
                 if 0 < len(bits) <= limit}
        categories = set(values)
        if not small or len(categories) <= 1:
            break
        new = {c for c in small if not (merged and c == name)}
        if not new or (not merged and len(new) == 1):
            # A category cannot be merged alone: add the smallest remaining one.
            totals: dict[str, int] = {}
            for v, bits in zip(values, current.members, strict=True):
                totals[v] = totals.get(v, 0) + len(bits)
            others = [c for c in categories if c not in new and not (merged and c == name)]
            new.add(min(others, key=lambda c: (totals[c], c)))
        to_merge = new | ({name} if merged else set())
        merged |= new
        current = _merge(current, column, values, to_merge, label or "/".join(sorted(merged)))
    note = (f"{column}: merged {sorted(merged)} into {label or '/'.join(sorted(merged))!r} "
            f"so every cell counts more than {limit}") if merged else ""
    return replace(current, notes=current.notes + ((note,) if note else ()))


def _merge(table: SafeTable, column: str, values: list[str], to_merge: set[str],
           name: str) -> SafeTable:
    keys = table.table.select(table.dimensions).cast(pl.String).fill_null("null")
    keys = keys.with_columns(pl.Series(column, [name if v in to_merge else v for v in values]))
    # Per cell (not per record): union the bitmaps of rows that now share a key.
    union: dict[tuple, BitMap] = {}
    for row, bits in zip(keys.iter_rows(), table.members, strict=True):
        union.setdefault(row, BitMap()).update(bits)
    ordered = sorted(union)
    frame = pl.DataFrame(ordered, schema=list(table.dimensions), orient="row")
    members = tuple(union[k] for k in ordered)
    frame = frame.with_columns(pl.Series(table.count_column, [len(m) for m in members],
                                         dtype=pl.Int64))
    return replace(table, table=frame, members=members)


def round_to(table: SafeTable, base: int = 5, *, columns: Sequence[str] | None = None) -> SafeTable:
    """Round count columns to the nearest multiple of ``base`` (halves up).

    The membership is unchanged (it records the true units). Rounding is a disclosure
    control the reviewer sees: the checker sends rounded tables to review.
    """
    if base < 1:
        raise SafeOutputError(f"base must be a positive integer, got {base}")
    names = list(columns) if columns is not None else [table.count_column]
    missing = [c for c in names if c not in table.table.columns]
    if missing:
        raise SafeOutputError(f"no column(s) {missing} in the table")
    rounded = table.table.with_columns(
        ((pl.col(c) + base // 2) // base * base).alias(c) for c in names)
    return replace(table, table=rounded,
                   notes=(*table.notes, f"{', '.join(names)} rounded to multiples of {base}"))


def outputs_dir() -> Path:
    """``$ENCLAVE_SCRATCH/outputs`` (created if missing)."""
    folder = env_path("ENCLAVE_SCRATCH") / OUTPUTS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_output(table: SafeTable | pl.DataFrame, name: str, *, folder: Path | None = None) -> Path:
    """Write an output into the workspace's ``outputs/`` folder, with its cell sidecar.

    Parameters
    ----------
    table : SafeTable or polars.DataFrame
        A :class:`SafeTable` also writes ``<name>.cells.parquet`` (its cell membership);
        a plain DataFrame (e.g. a coefficient table) is written alone.
    name : str
        File name ending in ``.csv`` (no folders).
    folder : Path, optional
        Default :func:`outputs_dir`.

    Returns
    -------
    Path
        The written CSV.
    """
    if not name.endswith(".csv") or "/" in name or "\\" in name or name.startswith("."):
        raise SafeOutputError(f"output name {name!r}: give a plain file name ending in .csv")
    target = (folder or outputs_dir()) / name
    frame = table.table if isinstance(table, SafeTable) else table
    frame.write_csv(target)
    sidecar = target.with_name(target.name + ".cells.parquet")
    if isinstance(table, SafeTable):
        write_cells(sidecar, table.cells(name))
    elif sidecar.exists():
        sidecar.unlink()  # a stale sidecar would describe another table
    return target
