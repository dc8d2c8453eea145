"""Ground truth of the inpatient and pharmacy files lists exactly the faults an independent
scan finds (the outpatient/enrollment scan lives in test_synth_generate.py)."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from catalog import load_catalog
from catalog.checks import tw_id_is_valid
from pipelines.synth.defects import FIELD_FAULTS
from pipelines.synth.generate import generate_source

NEW_FILES = ["H_NHI_IPDTE", "H_NHI_IPDTO", "H_NHI_DRUGE", "H_NHI_DRUGO"]
ID_COLUMNS = ("ID", "PRSN_ID", "PHAR_ID")


def _date_ok(s: str) -> bool:
    try:
        datetime.strptime(s, "%Y%m%d")
    except ValueError:
        return False
    return len(s) == 8


def _scan(path: Path, name: str, codec: str, drug_nos: set[str]) -> set[tuple[int, str]]:
    fd = load_catalog().file(name)
    cols = fd.column_names
    pk = [cols.index(c) for c in fd.primary_key]
    coded = {c.name: set(load_catalog().codeset(c.codes).values) for c in fd.columns if c.codes}
    date_cols = FIELD_FAULTS[name].get("invalid_date", ([], []))[0]
    found, seen = set(), set()
    for i, raw in enumerate(path.read_bytes().split(b"\n")[1:-1], start=2):
        try:
            line = raw.decode(codec)
        except UnicodeDecodeError:
            found.add((i, "bad_encoding"))
            continue
        f = line.split(",")
        if len(f) != len(cols):
            found.add((i, "truncated_row"))
            continue
        row = dict(zip(cols, f, strict=True))
        key = tuple(f[j] for j in pk)
        if key in seen:
            found.add((i, "duplicate_key"))
            continue
        seen.add(key)
        if any(row.get(c) and not tw_id_is_valid(row[c]) for c in ID_COLUMNS):
            found.add((i, "bad_checksum"))
        if any(not _date_ok(row[c]) for c in date_cols):
            found.add((i, "invalid_date"))
        if any(row[c] and row[c] not in ok for c, ok in coded.items()) or (
            "DRUG_NO" in row and row["DRUG_NO"] not in drug_nos
        ):
            found.add((i, "unknown_code"))
    return found


@pytest.mark.parametrize("encoding,codec", [("utf-8", "utf-8"), ("big5", "cp950")])
def test_ground_truth_of_new_files(tmp_path: Path, encoding: str, codec: str) -> None:
    s = generate_source(
        tmp_path, people=500, years=[2022], seed=8, defect_rate=0.03, encoding=encoding,
        files=NEW_FILES,
    )  # fmt: skip
    with (tmp_path / "ground_truth" / "defects.csv").open(encoding="utf-8") as fh:
        truth = list(csv.DictReader(fh))
    assert len(truth) == s.defects
    drug_nos = set(pl.read_csv(tmp_path / "H_NHI_DRUG_2022.csv", infer_schema_length=0)["DRUG_NO"])
    kinds = set()
    for name in NEW_FILES:
        fn = f"{name}_2022.csv"
        listed = {(int(t["line"]), t["kind"]) for t in truth if t["file"] == fn}
        assert listed, fn
        kinds |= {k for _, k in listed}
        assert _scan(tmp_path / fn, name, codec, drug_nos) == listed, fn
    assert kinds >= {"bad_checksum", "invalid_date", "unknown_code", "duplicate_key"}
    # Pharmacy files take field faults only (their rows all carry the Σ TOTAL_DOT rule).
    pharmacy = {t["kind"] for t in truth if t["file"].startswith("H_NHI_DRUG")}
    assert pharmacy <= {"bad_checksum", "invalid_date", "unknown_code"}
