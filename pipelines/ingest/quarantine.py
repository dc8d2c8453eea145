"""The quarantine: every rejected line with file, line number, rule, column, value and its raw
text (raw bytes too when they could not be decoded). Custodian-only (folder mode 0700)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from pipelines.ingest.decode import StructuralFault

SCHEMA = {
    "source_file": pl.String,
    "file_type": pl.String,
    "line": pl.Int64,
    "rule": pl.String,
    "column": pl.String,
    "value": pl.String,
    "rules": pl.String,
    "detail": pl.String,
    "raw": pl.String,
    "raw_bytes": pl.Binary,
}


def from_structural(faults: list[StructuralFault], source: str, file_type: str, encoding: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "source_file": [source] * len(faults),
            "file_type": [file_type] * len(faults),
            "line": [f.line for f in faults],
            "rule": [f.rule for f in faults],
            "column": [None] * len(faults),
            "value": [f.raw.hex() if f.rule == "bad_encoding" else None for f in faults],
            "rules": [f.rule for f in faults],
            "detail": [f.detail for f in faults],
            "raw": [f.raw.decode(encoding, errors="backslashreplace") for f in faults],
            "raw_bytes": [f.raw for f in faults],
        },
        schema=SCHEMA,
    )


def from_rejected(
    rejected: pl.DataFrame,
    columns: list[str],
    source: str,
    file_type: str,
    rule_details: dict[tuple[str, str], str],
) -> pl.DataFrame:
    from pipelines.ingest.rules import raw_line

    raw = rejected.select(raw_line(columns)).to_series()
    details = [rule_details.get((r, c), "") for r, c in zip(rejected["_rule"], rejected["_column"], strict=True)]
    return pl.DataFrame(
        {
            "source_file": [source] * rejected.height,
            "file_type": [file_type] * rejected.height,
            "line": rejected["_line"],
            "rule": rejected["_rule"],
            "column": rejected["_column"],
            "value": rejected["_value"],
            "rules": rejected["_rules"],
            "detail": details,
            "raw": raw,
            "raw_bytes": raw.cast(pl.Binary),
        },
        schema=SCHEMA,
    )


def read_lines(path: Path, encoding: str, wanted: set[int], block: int = 64 << 20) -> dict[int, bytes]:
    """Fetch the raw bytes of some physical lines (1-based) without holding the file."""
    if not wanted:
        return {}
    found: dict[int, bytes] = {}
    targets = np.array(sorted(wanted), dtype=np.int64)
    line_base = 1
    carry = b""
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(block)
            data = carry + chunk
            if not data:
                break
            cut = len(data) if not chunk else data.rfind(b"\n") + 1
            if cut == 0:
                carry = data
                continue
            body, carry = data[:cut], data[cut:]
            arr = np.frombuffer(body, dtype=np.uint8)
            ends = np.flatnonzero(arr == 10)
            if not body.endswith(b"\n"):
                ends = np.append(ends, len(body))
            starts = np.concatenate(([0], ends[:-1] + 1))
            numbers = np.arange(line_base, line_base + len(ends))
            hit = np.isin(numbers, targets)
            for i in np.flatnonzero(hit):
                found[int(numbers[i])] = body[starts[i] : ends[i]].rstrip(b"\r")
            line_base += len(ends)
            if not chunk:
                break
    return found


def from_crossrow(
    rows: list[tuple[str, int, str, str, str]],
    file_type: str,
    raw_by_source: dict[str, dict[int, bytes]],
    encoding_by_source: dict[str, str],
) -> pl.DataFrame:
    raws = [raw_by_source.get(src, {}).get(line, b"") for src, line, *_ in rows]
    return pl.DataFrame(
        {
            "source_file": [r[0] for r in rows],
            "file_type": [file_type] * len(rows),
            "line": [r[1] for r in rows],
            "rule": [r[2] for r in rows],
            "column": [r[3] for r in rows],
            "value": [None] * len(rows),
            "rules": [r[2] for r in rows],
            "detail": [r[4] for r in rows],
            "raw": [
                raw.decode(encoding_by_source.get(r[0], "utf-8"), errors="backslashreplace")
                for raw, r in zip(raws, rows, strict=True)
            ],
            "raw_bytes": raws,
        },
        schema=SCHEMA,
    )
