"""Loads the shipped code/weight tables under ``pipelines/synth/data/`` (cached, read-only)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import polars as pl

DATA_DIR = Path(__file__).parent / "data"


@cache
def table(name: str) -> pl.DataFrame:
    """The data table ``data/<name>.csv`` with every column read as text."""
    return pl.read_csv(DATA_DIR / f"{name}.csv", infer_schema_length=0)
