"""Orchestration: people chunk by chunk, every requested file per year, CSV out, ground truth.

Memory stays flat in N: each chunk of :data:`CHUNK` people is generated, written straight
to the open output files and dropped. Each chunk draws from its own seed (seed, chunk,
year), so output is deterministic; only the SEQ_NO counters run across chunks in order.
"""

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
from pipelines.synth.inpatient import make_admissions
from pipelines.synth.institutions import Institutions, make_institutions
from pipelines.synth.optout import write_optout
from pipelines.synth.outpatient import OutpatientState, make_visits, new_state
from pipelines.synth.pharmacy import make_dispensings
from pipelines.synth.population import People, make_people
from pipelines.synth.reference import drug_rows, medfa_rows

CHUNK = 25_000  # people per chunk: ~375k visits, a few hundred MiB at most
SUPPORTED = list(FILES)
# What each file needs so that the output is referentially complete.
DEPENDS = {
    "H_NHI_OPDTE": ["H_NHI_ENROL", "H_NHI_MEDFA"],
    "H_NHI_OPDTO": ["H_NHI_OPDTE", "H_NHI_DRUG"],
    "H_NHI_IPDTE": ["H_NHI_ENROL", "H_NHI_MEDFA"],
    "H_NHI_IPDTO": ["H_NHI_IPDTE", "H_NHI_DRUG"],
    "H_NHI_DRUGE": ["H_NHI_ENROL", "H_NHI_MEDFA"],
    "H_NHI_DRUGO": ["H_NHI_DRUGE", "H_NHI_DRUG"],
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


def _typed(df: pl.DataFrame, name: str) -> pl.DataFrame:
    # File columns in order; columns a generator leaves out are empty.
    have = set(df.columns)
    return df.select(
        pl.col(c) if c in have else pl.lit(None, pl.Utf8).alias(c) for c in columns_for(name)
    )


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

    def write(self, df: pl.DataFrame, *, damaged: bool = False) -> None:
        """Append ``df`` (typed or text); ``damaged`` frames carry defect placeholders."""
        df = df.select(columns_for(self.name))
        if self.encoding == "utf-8" and not damaged:
            # Fast path: Polars writes straight into the file, no Python string in between.
            df.write_csv(self.fh, include_header=False, quote_style="never", float_precision=2)
        else:
            data = df.write_csv(include_header=False, quote_style="never", float_precision=2)
            self.fh.write(dfx.finish_bytes(data.encode(self.encoding)))
        self.lines += df.height
        self.rows += df.height


@dataclass
class _States:
    """Running SEQ_NO counters of one data year, per claim file family."""

    opd: OutpatientState
    ipd: OutpatientState
    drug: OutpatientState

    @classmethod
    def new(cls, n_inst: int) -> _States:
        return cls(new_state(n_inst), new_state(n_inst), new_state(n_inst))


def _chunk_frames(
    pp: People,
    inst: Institutions,
    year: int,
    todo: list[str],
    st: _States,
    rngs: list[np.random.Generator],
) -> dict[str, tuple[pl.DataFrame, np.ndarray]]:
    """Every requested claim/enrollment frame of one chunk-year, with row-fault safety masks."""
    frames: dict[str, tuple[pl.DataFrame, np.ndarray]] = {}
    rng_e, rng_o, rng_i, rng_p = rngs
    if "H_NHI_ENROL" in todo:
        e = make_enrollment(pp, year, rng_e)
        frames["H_NHI_ENROL"] = (e, e.select(pl.len().over("_pidx") > 1).to_series().to_numpy())
    # Visits are generated whenever pharmacy claims are wanted (dispensings derive from them).
    if "H_NHI_OPDTE" in todo or "H_NHI_DRUGE" in todo:
        with_orders = "H_NHI_OPDTO" in todo
        v, o, arrays = make_visits(pp, inst, year, st.opd, rng_o, with_orders=with_orders)
        if "H_NHI_OPDTE" in todo:
            safe = (v["_n_orders"].to_numpy() == 0) | (not with_orders)
            frames["H_NHI_OPDTE"] = (v, safe)
        if o is not None:
            frames["H_NHI_OPDTO"] = (o, o["ORDER_TYPE"].to_numpy() != "1")
        if "H_NHI_DRUGE" in todo:
            de, do = make_dispensings(pp, inst, year, arrays, st.drug, rng_p)
            # Every dispensing has drug lines in the Σ TOTAL_DOT = DRUG_DOT rule: no row faults.
            frames["H_NHI_DRUGE"] = (de, np.zeros(de.height, bool))
            if "H_NHI_DRUGO" in todo:
                frames["H_NHI_DRUGO"] = (do, np.zeros(do.height, bool))
    if "H_NHI_IPDTE" in todo:
        ie, io = make_admissions(pp, inst, year, st.ipd, rng_i)
        with_orders = "H_NHI_IPDTO" in todo
        frames["H_NHI_IPDTE"] = (ie, (ie["_n_orders"].to_numpy() == 0) | (not with_orders))
        if with_orders:
            # MED_DOT = Σ ORDER_DOT of drug lines too; only procedure lines may vanish.
            frames["H_NHI_IPDTO"] = (io, io["ORDER_TYPE"].to_numpy() == "2")
    return frames


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
    people : population size; processed in chunks of :data:`CHUNK` people.
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
    states = {y: _States.new(inst.frame.height) for y in years}
    all_ids = []
    n_chunks = (people + CHUNK - 1) // CHUNK
    for ci in range(n_chunks):
        n = min(CHUNK, people - ci * CHUNK)
        ss = np.random.SeedSequence([seed, ci])
        pp = make_people(n, block=ci, ref_year=years[0], rng=np.random.default_rng(ss.spawn(1)[0]))
        all_ids.append(pp.id)
        for y in years:
            rngs = [
                np.random.default_rng(s) for s in np.random.SeedSequence([seed, ci, y]).spawn(5)
            ]
            rng_d = rngs[4]
            frames = _chunk_frames(pp, inst, y, todo, states[y], rngs[:4])
            for name, (df, safe) in frames.items():
                sink = sinks[(name, y)]
                if defect_rate <= 0 or name not in dfx.INJECTED_FILES:
                    sink.write(_typed(df, name))
                    continue
                text, faults = dfx.inject(
                    name, _text(df, name), safe, primary_key_for(name), defect_rate, rng_d
                )
                for fl in faults:
                    truth.append(
                        {"file": sink.path.name, "line": sink.lines + 1 + fl.pop("_row"), **fl}
                    )
                sink.write(text, damaged=True)
            del frames
        if progress:
            progress(min(people, (ci + 1) * CHUNK), people)
    for y in years:
        if "H_NHI_MEDFA" in todo:
            sinks[("H_NHI_MEDFA", y)].write(_typed(medfa_rows(inst, y), "H_NHI_MEDFA"))
        if "H_NHI_DRUG" in todo:
            sinks[("H_NHI_DRUG", y)].write(_typed(drug_rows(y), "H_NHI_DRUG"))
    for s in sinks.values():
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
