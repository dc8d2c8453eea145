"""Orchestration: people chunk by chunk, every requested file per year, CSV out, ground truth."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from enclave.errors import InputError
from pipelines.synth import defects as dfx
from pipelines.synth.columns import FILES, columns_for, primary_key_for
from pipelines.synth.enrollment import make_enrollment
from pipelines.synth.institutions import make_institutions
from pipelines.synth.optout import write_optout
from pipelines.synth.outpatient import make_visits, new_state
from pipelines.synth.population import make_people
from pipelines.synth.reference import drug_rows, medfa_rows

CHUNK = 100_000
SUPPORTED = ["H_NHI_ENROL", "H_NHI_OPDTE", "H_NHI_OPDTO", "H_NHI_MEDFA", "H_NHI_DRUG"]
# What each file needs so that the output is referentially complete.
DEPENDS = {
    "H_NHI_OPDTE": ["H_NHI_ENROL", "H_NHI_MEDFA"],
    "H_NHI_OPDTO": ["H_NHI_OPDTE", "H_NHI_DRUG"],
}


class SynthError(InputError):
    """Invalid synthetic-data request (unknown file, encoding, rate)."""


@dataclass
class SynthSummary:
    """What :func:`generate_source` wrote."""

    out: Path
    rows: dict[str, int] = field(default_factory=dict)  # file name -> data rows
    paths: list[Path] = field(default_factory=list)
    defects: int = 0
    optout: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"out": str(self.out), "rows": self.rows, "paths": [str(p) for p in self.paths],
                "defects": self.defects, "optout": self.optout}  # fmt: skip


def _resolve(files: list[str] | None) -> list[str]:
    want = list(files) if files else list(SUPPORTED)
    for f in want:
        if f not in SUPPORTED:
            raise SynthError(
                f"--files: unknown or unsupported file {f!r}; supported: {', '.join(SUPPORTED)}"
            )
    todo = list(want)
    for f in todo:
        for d in DEPENDS.get(f, []):
            if d not in todo:
                todo.append(d)
    return [f for f in FILES if f in todo]


def _text(df: pl.DataFrame, name: str) -> pl.DataFrame:
    # Every column to text: floats with two decimals (UNIT_P 162.00), ints as digits, null stays.
    cols = columns_for(name)
    exprs = []
    for c in cols:
        if c not in df.columns:
            exprs.append(pl.lit(None, pl.Utf8).alias(c))
        elif df.schema[c] == pl.Float64:
            cents = (pl.col(c) * 100).round().cast(pl.Int64)
            exprs.append(
                pl.format("{}.{}", cents // 100, (cents % 100).cast(pl.Utf8).str.zfill(2)).alias(c)
            )
        else:
            exprs.append(pl.col(c).cast(pl.Utf8))
    return df.select(exprs)


class _Sink:
    def __init__(self, path: Path, name: str, encoding: str) -> None:
        self.path, self.name, self.encoding = path, name, encoding
        self.fh = path.open("wb")
        self.fh.write((",".join(columns_for(name)) + "\n").encode(encoding))
        self.lines = 1
        self.rows = 0

    def write(self, text: pl.DataFrame) -> None:
        data = text.write_csv(include_header=False, quote_style="never").encode(self.encoding)
        self.fh.write(dfx.finish_bytes(data))
        self.lines += text.height
        self.rows += text.height


def generate_source(
    out: Path,
    *,
    people: int,
    years: range | list[int],
    seed: int,
    encoding: str = "utf-8",
    defect_rate: float = 0.0,
    optout_share: float = 0.02,
    files: list[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SynthSummary:
    """Write synthetic NHI source files into ``out``; same arguments give identical bytes.

    Parameters
    ----------
    out : output folder (created).
    people : population size; processed in chunks of 100,000.
    years : data years; one file per catalog file per year.
    seed : random seed.
    encoding : ``utf-8`` or ``big5`` (written with Python's ``cp950``).
    defect_rate : share of rows that get one known fault (ground truth in
        ``ground_truth/defects.csv``).
    optout_share : share of people on the opt-out lists.
    files : file names to write (their dependencies are added); default all supported.
    progress : called with (people done, people total).

    Raises
    ------
    SynthError
        Unknown file, encoding, or a rate outside [0, 0.3].
    """
    enc = {"utf-8": "utf-8", "utf8": "utf-8", "big5": "cp950", "cp950": "cp950"}.get(
        encoding.lower()
    )
    if enc is None:
        raise SynthError(f"--encoding {encoding!r}: use utf-8 or big5")
    if not 0 <= defect_rate <= 0.3:
        raise SynthError(f"--defects {defect_rate}: must be between 0 and 0.3")
    if people < 1:
        raise SynthError("--people must be at least 1")
    years = sorted(years)
    todo = _resolve(files)
    out.mkdir(parents=True, exist_ok=True)
    root = np.random.SeedSequence(seed)
    inst = make_institutions(people, np.random.default_rng(root.spawn(1)[0]))
    summary = SynthSummary(out=out)
    sinks = {(f, y): _Sink(out / f"{f}_{y}.csv", f, enc) for f in todo for y in years}
    truth: list[dict] = []
    states = {y: new_state(inst.frame.height) for y in years}
    all_ids = []
    n_chunks = (people + CHUNK - 1) // CHUNK
    for ci in range(n_chunks):
        n = min(CHUNK, people - ci * CHUNK)
        ss = np.random.SeedSequence([seed, ci])
        pp = make_people(n, block=ci, ref_year=years[0], rng=np.random.default_rng(ss.spawn(1)[0]))
        all_ids.append(pp.id)
        for y in years:
            rng_e, rng_v, rng_d = (
                np.random.default_rng(s) for s in np.random.SeedSequence([seed, ci, y]).spawn(3)
            )
            frames: dict[str, tuple[pl.DataFrame, np.ndarray]] = {}
            if "H_NHI_ENROL" in todo:
                e = make_enrollment(pp, y, rng_e)
                safe = e.select(pl.len().over("_pidx") > 1).to_series().to_numpy()
                frames["H_NHI_ENROL"] = (e, safe)
            if "H_NHI_OPDTE" in todo:
                v, o = make_visits(pp, inst, y, states[y], rng_v)
                with_orders = "H_NHI_OPDTO" in todo
                safe = (v["_n_orders"].to_numpy() == 0) | (not with_orders)
                frames["H_NHI_OPDTE"] = (v, safe)
                if with_orders:
                    frames["H_NHI_OPDTO"] = (o, o["ORDER_TYPE"].to_numpy() != "1")
            for name, (df, safe) in frames.items():
                sink = sinks[(name, y)]
                text = _text(df, name)
                text, faults = dfx.inject(
                    name, text, safe, primary_key_for(name), defect_rate, rng_d
                )
                for fl in faults:
                    truth.append(
                        {"file": sink.path.name, "line": sink.lines + 1 + fl.pop("_row"), **fl}
                    )
                sink.write(text)
        if progress:
            progress(min(people, (ci + 1) * CHUNK), people)
    for y in years:
        if "H_NHI_MEDFA" in todo:
            sinks[("H_NHI_MEDFA", y)].write(_text(medfa_rows(inst, y), "H_NHI_MEDFA"))
        if "H_NHI_DRUG" in todo:
            sinks[("H_NHI_DRUG", y)].write(_text(drug_rows(y), "H_NHI_DRUG"))
    for (f, _y), s in sinks.items():
        s.fh.close()
        summary.rows[s.path.name] = s.rows
        summary.paths.append(s.path)
    summary.optout = write_optout(
        out, pl.concat(all_ids), years, optout_share, np.random.default_rng([seed, 7_777])
    )
    if defect_rate > 0:
        gt = out / "ground_truth"
        gt.mkdir(exist_ok=True)
        buf = io.StringIO()
        w = csv.DictWriter(
            buf, ["file", "line", "kind", "column", "value", "key"], lineterminator="\n"
        )
        w.writeheader()
        w.writerows(sorted(truth, key=lambda t: (t["file"], t["line"])))
        (gt / "defects.csv").write_text(buf.getvalue(), encoding="utf-8")
        summary.defects = len(truth)
    return summary
