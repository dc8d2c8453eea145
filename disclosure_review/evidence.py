"""Evidence: what the readers extract from an output file and the rules read.

Rules never open files; they read one :class:`Evidence` (a table, a text, or a figure) and
its :class:`TableSpec` (which columns hold counts, values, percentages, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import polars as pl

EvidenceKind = Literal["table", "text", "code", "figure"]


@dataclass(frozen=True)
class FigureInfo:
    """A raster figure: format, size and metadata keys found in the file."""

    format: str
    width: int
    height: int
    metadata_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSpec:
    """The role of each column of a table, from the manifest or inferred.

    ``kind`` is one of frequency, magnitude, percent, regression, unknown.
    """

    kind: str
    counts: tuple[str, ...] = ()
    institution_counts: tuple[str, ...] = ()
    dimensions: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    extremes: tuple[str, ...] = ()
    percent: tuple[str, ...] = ()
    denominator: str | None = None
    residual_df: str | int | None = None
    contributions: tuple[str, ...] = ()
    per_record: tuple[str, ...] = ()
    source: Literal["manifest", "inferred"] = "inferred"
    notes: tuple[str, ...] = ()


@dataclass
class Evidence:
    """One checkable part of an output file.

    Parameters
    ----------
    file : str
        The file as the user named it.
    part : str
        Which part of the file ('' for the whole file, ``sheet 'x'``, ``cell 3 output``).
    kind : EvidenceKind
        table, text, code or figure.
    table : pl.DataFrame, optional
        The table as read (text columns keep masks such as ``<6``).
    text : str, optional
        Text or source code.
    figure : FigureInfo, optional
        Figure properties.
    spec : TableSpec, optional
        Column roles; set by the checker before rules run.
    """

    file: str
    part: str
    kind: EvidenceKind
    table: pl.DataFrame | None = None
    text: str | None = None
    figure: FigureInfo | None = None
    spec: TableSpec | None = None
    declared_kind: str | None = None
    _row_labels: list[str] | None = field(default=None, repr=False)

    def where(self, location: str) -> str:
        """Prefix ``location`` with the part of the file, when there is one."""
        return f"{self.part}: {location}" if self.part else location

    def row_labels(self) -> list[str]:
        """Human labels for each table row: ``row[sex=F, age=65+]`` or ``row 3``."""
        if self._row_labels is None:
            if self.table is None:
                raise ValueError("row_labels() needs a table")
            dims = list(self.spec.dimensions) if self.spec else []
            if dims:
                parts = [
                    pl.concat_str(
                        [pl.lit(f"{d}="), pl.col(d).cast(pl.String).fill_null("")]
                    )
                    for d in dims
                ]
                labels = self.table.select(
                    pl.concat_str(parts, separator=", ").alias("l")
                )["l"].to_list()
                self._row_labels = [f"row[{x}]" for x in labels]
            else:
                # 1-based, counting the header as line 1 would confuse; say data row.
                self._row_labels = [f"row {i + 1}" for i in range(self.table.height)]
        return self._row_labels

    def cell(self, row: int, column: str) -> str:
        """Location of one cell, e.g. ``row[sex=F] column 'n'``."""
        return self.where(f"{self.row_labels()[row]} column '{column}'")
