"""Tests of the synthetic source generator: conformity, determinism, realism, ground truth."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import polars as pl
import pytest

from pipelines.synth.columns import columns_for, primary_key_for
from pipelines.synth.generate import generate_source


def _id_ok(s: str) -> bool:
    vals = dict(zip("ABCDEFGHJKLMNPQRSTUVXYWZIO", [*range(10, 34), 34, 35], strict=True))
    v = vals[s[0]]
    total = (
        v // 10
        + (v % 10) * 9
        + sum(int(d) * w for d, w in zip(s[1:9], range(8, 0, -1), strict=True))
    )
    return (total + int(s[9])) % 10 == 0


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    generate_source(out, people=3000, years=[2023], seed=11)
    return out


def _read(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema_length=0)


def test_columns_keys_and_references(clean: Path) -> None:
    frames = {}
    for f in ["H_NHI_ENROL", "H_NHI_OPDTE", "H_NHI_OPDTO", "H_NHI_MEDFA", "H_NHI_DRUG"]:
        df = _read(clean / f"{f}_2023.csv")
        assert df.columns == columns_for(f)
        assert df.select(primary_key_for(f)).is_duplicated().sum() == 0, f
        frames[f] = df
    v, o = frames["H_NHI_OPDTE"], frames["H_NHI_OPDTO"]
    key = primary_key_for("H_NHI_OPDTE")
    assert o.join(v, on=key, how="anti").height == 0
    assert v.join(frames["H_NHI_ENROL"], on="ID", how="anti").height == 0
    assert v.join(frames["H_NHI_MEDFA"], on="HOSP_ID", how="anti").height == 0
    assert all(_id_ok(x) for x in v["ID"].unique().to_list() + v["PRSN_ID"].unique().to_list())
    n = v.with_columns(
        pl.col(c).cast(pl.Int64)
        for c in [
            "DRUG_DOT",
            "TREAT_DOT",
            "DIAG_DOT",
            "DSVC_DOT",
            "T_DOT",
            "PART_DOT",
            "T_APPL_DOT",
        ]
    )
    assert (n["T_DOT"] == n["DRUG_DOT"] + n["TREAT_DOT"] + n["DIAG_DOT"] + n["DSVC_DOT"]).all()
    assert (n["T_APPL_DOT"] == n["T_DOT"] - n["PART_DOT"]).all()
    drug = (
        o.filter(pl.col("ORDER_TYPE") == "1")
        .group_by(key)
        .agg(pl.col("TOTAL_DOT").cast(pl.Int64).sum())
    )
    chk = n.join(drug, on=key, how="left").with_columns(pl.col("TOTAL_DOT").fill_null(0))
    assert (chk["TOTAL_DOT"] == chk["DRUG_DOT"]).all()


def test_realism(clean: Path) -> None:
    e = _read(clean / "H_NHI_ENROL_2023.csv").unique("ID")
    age = 2023 - e["ID_BIRTHDAY"].str.slice(0, 4).cast(pl.Int64)
    assert (
        abs((age >= 66).mean() - 0.18) < 0.02 + 0.01
    )  # tolerance ±2 points (+1 for birth-day rounding)
    males = (e["ID_S"] == "1").sum()
    assert abs(100 * males / (e.height - males) - 98) <= 3
    assert (e["ID"].str.slice(1, 1) == e["ID_S"]).all()
    v = _read(clean / "H_NHI_OPDTE_2023.csv")
    assert abs(v.height / e.height - 15) <= 2
    clinic_share = (v["HOSP_ID"].str.slice(0, 2) == "35").mean()
    assert 0.6 < clinic_share < 0.73
    wd = v["FUNC_DATE"].str.to_date("%Y%m%d").dt.weekday()
    assert (wd == 7).sum() * 5 < (wd == 3).sum()  # Sundays far fewer than Wednesdays
    female_only = v.filter(pl.col("ICD9CM_1").str.starts_with("O"))
    assert (female_only["ID_S"] == "2").all()


def _hashes(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*.csv"))}


def test_deterministic(tmp_path: Path) -> None:
    kw = dict(people=800, years=[2023], seed=5, defect_rate=0.02)
    generate_source(tmp_path / "a", **kw)
    generate_source(tmp_path / "b", **kw)
    generate_source(tmp_path / "c", **{**kw, "seed": 6})
    assert _hashes(tmp_path / "a") == _hashes(tmp_path / "b")
    assert _hashes(tmp_path / "a") != _hashes(tmp_path / "c")


def _scan(path: Path, name: str, enc: str) -> set[tuple[int, str]]:
    """Independent re-scan of one file: (line, kind) of every fault found."""
    cols = columns_for(name)
    pk = [cols.index(c) for c in primary_key_for(name)]
    found, seen = set(), set()
    lines = path.read_bytes().split(b"\n")[1:-1]
    for i, raw in enumerate(lines, start=2):
        try:
            line = raw.decode(enc)
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
        for c in ("ID", "PRSN_ID"):
            if name != "H_NHI_ENROL" and c in row and row[c] and not _id_ok(row[c]):
                found.add((i, "bad_checksum"))
        for c in ("ID_BIRTHDAY", "FUNC_DATE"):
            if row.get(c):
                try:
                    pl.Series([row[c]]).str.to_date("%Y%m%d", strict=True)
                except Exception:
                    found.add((i, "invalid_date"))
        if (
            row.get("ID_STATUS", "1") not in "12345"
            or row.get("DRUG_FRE", "")
            not in ("", "QD", "BID", "TID", "QID", "HS", "PRN", "STAT", "ASORDER")
            or row.get("FUNC_TYPE", "01") in ("ZZ", "99")
        ):
            found.add((i, "unknown_code"))
    return found


@pytest.mark.parametrize("encoding,codec", [("utf-8", "utf-8"), ("big5", "cp950")])
def test_ground_truth_complete(tmp_path: Path, encoding: str, codec: str) -> None:
    s = generate_source(
        tmp_path, people=600, years=[2023], seed=3, defect_rate=0.03, encoding=encoding
    )
    with (tmp_path / "ground_truth" / "defects.csv").open(encoding="utf-8") as fh:
        truth = list(csv.DictReader(fh))
    assert len(truth) == s.defects > 50
    assert {t["kind"] for t in truth} >= {
        "invalid_date",
        "unknown_code",
        "duplicate_key",
        "truncated_row",
        "bad_encoding",
        "bad_checksum",
    }
    for name in ["H_NHI_ENROL", "H_NHI_OPDTE", "H_NHI_OPDTO"]:
        fn = f"{name}_2023.csv"
        listed = {(int(t["line"]), t["kind"]) for t in truth if t["file"] == fn}
        assert _scan(tmp_path / fn, name, codec) == listed, fn


def test_big5_chinese(tmp_path: Path) -> None:
    generate_source(tmp_path, people=300, years=[2023], seed=2, encoding="big5",
                    files=["H_NHI_ENROL"])  # fmt: skip
    text = (tmp_path / "H_NHI_ENROL_2023.csv").read_bytes().decode("cp950")
    assert "市" in text or "縣" in text
    assert "H_NHI_MEDFA_2023.csv" not in {p.name for p in tmp_path.iterdir()}


def test_optout_spike(tmp_path: Path) -> None:
    s = generate_source(tmp_path, people=5000, years=[2023], seed=4, files=["H_NHI_ENROL"])
    df = pl.concat([_read(p) for p in sorted((tmp_path / "optout").glob("optout_*.csv"))])
    assert df.columns == ["ID", "EFFECTIVE_DATE", "CHANNEL", "ACTION"]
    assert set(df["ACTION"]) <= {"optout", "withdraw"} and "withdraw" in set(df["ACTION"])
    assert df["ID"].is_duplicated().any()  # people on two lists
    per_month = (
        df.filter(pl.col("ACTION") == "optout")["EFFECTIVE_DATE"].str.slice(0, 6).value_counts()
    )
    top = per_month.sort("count", descending=True)[0]
    assert int(top["EFFECTIVE_DATE"][0]) == s.optout["spike_month"]
