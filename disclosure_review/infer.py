"""Column roles: read the export manifest, or infer them conservatively from names.

Without a manifest, a column is a count when its name says so in English or Chinese (n,
count, freq, 人數, 件數, 次數, 人次, 總數, ...); a value (magnitude) when it names a sum,
mean, median, amount (平均, 金額, 點數, ...); a percent when it names a share or rate (%,
pct, 百分比, 比例, 率). Anything else textual is a dimension. Inference never guesses a
table safe: a table whose roles cannot be found is ``unknown`` and goes to review.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from disclosure_review.errors import ManifestError
from disclosure_review.evidence import Evidence, TableSpec
from enclave.yaml_text import parse_yaml

MANIFEST_KINDS = ("frequency", "magnitude", "percent", "regression", "figure", "code", "text")

_COUNT_EXACT = {
    "n", "count", "counts", "freq", "frequency", "num", "number", "cases", "persons",
    "patients", "people", "subjects", "obs", "nobs", "n_obs", "total", "all", "sum_n",
    "人數", "件數", "次數", "人次", "總數", "個數", "例數", "筆數", "數量", "合計", "總計", "小計",
    "病人數", "患者數", "就醫人數", "就醫次數", "案件數", "家數", "院所數", "人年",
}
_COUNT_PART = re.compile(
    r"(^n_|_n$|^n\d|count|freq|^num_|_num$|denom|^base$|分母|人數|件數|次數|人次|總數|個數|例數|"
    r"筆數|家數|院所數)",
    re.IGNORECASE,
)
_MARGIN_NAMES = {"total", "all", "合計", "總計", "小計", "總和"}
_INSTITUTION = re.compile(r"(家數|院所數|n_hosp|hosp_n|institution|hospitals|clinics|facilit)",
                          re.IGNORECASE)
_PERCENT = re.compile(
    r"(%|pct|percent|proportion|prop$|^prop_|share|rate|百分比|比例|比率|率|佔比)", re.IGNORECASE
)
_EXTREME = re.compile(r"(^min|_min$|^max|_max$|minimum|maximum|最小|最大|最低|最高)",
                      re.IGNORECASE)
_VALUE = re.compile(
    r"(mean|avg|average|sum|median|amount|amt|cost|fee|points|dot|expense|std|^sd$|_sd$|"
    r"平均|總和|中位數|金額|點數|費用|標準差|min|max|最小|最大|最低|最高)",
    re.IGNORECASE,
)
_CONTRIB = re.compile(r"^(top\d|top_\d|largest\d?|second_largest|first_largest)",
                      re.IGNORECASE)
_REGRESSION = re.compile(
    r"^(coef|coefficient|estimate|beta|b|std_?err|se|std\. ?err\.?|t|z|p|p_?value|pr\(>\|t\|\)|"
    r"ci_?low|ci_?high|conf_?low|conf_?high|odds_?ratio|or|hr|hazard_?ratio|係數|標準誤|p值)$",
    re.IGNORECASE,
)
_PER_RECORD = re.compile(
    r"^(resid|residual|residuals|fitted|fitted_values|predicted|prediction|predictions|yhat|"
    r"y_hat|score|propensity|propensity_score|殘差|預測值|配適值)$",
    re.IGNORECASE,
)
_DF = re.compile(r"^(df|df_resid|residual_df|resid_df|df_residual|自由度)$", re.IGNORECASE)

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class NumericColumn:
    """A column parsed as numbers: ``values`` (NaN where masked) and the ``masked`` flags."""

    values: np.ndarray
    masked: np.ndarray
    raw: list[str | None]


def numeric_column(frame: pl.DataFrame, column: str) -> NumericColumn:
    """Parse ``column`` as numbers; non-numeric text (``*``, ``<6``, blank) is masked.

    Thousands separators and surrounding spaces are accepted (``1,234``).
    """
    series = frame[column]
    if series.dtype.is_numeric():
        values = series.cast(pl.Float64).to_numpy().astype(float)
        masked = np.isnan(values)
        raw = [None if m else str(v) for v, m in zip(series.to_list(), masked, strict=True)]
        return NumericColumn(values=values, masked=masked, raw=raw)
    text = series.cast(pl.String)
    cleaned = text.str.strip_chars().str.replace_all(",", "").str.replace_all("%$", "")
    parsed = cleaned.cast(pl.Float64, strict=False)
    values = parsed.to_numpy().astype(float)
    masked = np.isnan(values)
    return NumericColumn(values=values, masked=masked, raw=text.to_list())


_MASK_TOKEN = re.compile(
    r"^\s*(\*+|x|X|-|–|—|\.\.|[<≤]\s*=?\s*\d+|\d+\s*[-–~]\s*\d+|NA|N/A|n/a|s|S|"
    r"suppressed|masked)?\s*$"
)


def _share_numeric(frame: pl.DataFrame, column: str) -> float:
    """Share of cells that are numbers or suppression marks (``*``, ``<6``, blank)."""
    col = numeric_column(frame, column)
    if not len(col.masked):
        return 0.0
    marks = [
        bool(m) and (raw is None or bool(_MASK_TOKEN.match(raw)))
        for raw, m in zip(col.raw, col.masked, strict=True)
    ]
    if not (~col.masked).any():
        return 0.0  # labels such as "<65", "65+" are not a count column
    return float(((~col.masked) | np.array(marks)).mean())


def infer_spec(evidence: Evidence) -> TableSpec:
    """Infer the column roles of a table from names and contents (conservative).

    Parameters
    ----------
    evidence : Evidence
        A table evidence item.

    Returns
    -------
    TableSpec
        Kind ``unknown`` when no count, value, percent or regression column is found.
    """
    frame = evidence.table
    if frame is None:
        raise ValueError("infer_spec needs a table")
    counts: list[str] = []
    inst: list[str] = []
    values: list[str] = []
    extremes: list[str] = []
    percent: list[str] = []
    contrib: list[str] = []
    per_record: list[str] = []
    dims: list[str] = []
    regression: list[str] = []
    unnamed: list[str] = []
    df_col: str | None = None
    for name in frame.columns:
        key = name.strip()
        low = key.casefold()
        numeric_share = _share_numeric(frame, name)
        if _PER_RECORD.match(key):
            per_record.append(name)
        elif _DF.match(key):
            df_col = name
        elif _REGRESSION.match(key):
            regression.append(name)
        elif _CONTRIB.match(key):
            contrib.append(name)
        elif low in _COUNT_EXACT or _COUNT_PART.search(key):
            counts.append(name)
            if _INSTITUTION.search(key):
                inst.append(name)
        elif _PERCENT.search(key):
            percent.append(name)
        elif _VALUE.search(key) and numeric_share > 0:
            values.append(name)
            if _EXTREME.search(key):
                extremes.append(name)
        elif numeric_share >= 0.5:
            unnamed.append(name)
        else:
            dims.append(name)
    notes: list[str] = []
    if len(regression) < 2:
        # One column called b, t, p or se is no regression table; judge it by its contents.
        for name in regression:
            (unnamed if _share_numeric(frame, name) >= 0.5 else dims).append(name)
        regression = []
    only_margins = bool(counts) and all(c.strip().casefold() in _MARGIN_NAMES for c in counts)
    if unnamed and (only_margins or not counts) and not (values or percent or regression):
        # A wide cross-tabulation (age, F, M, Total): unnamed whole-number columns are
        # counts. Treating them so is the conservative reading; non-integers are values.
        for name in unnamed:
            col = numeric_column(frame, name)
            known = col.values[~col.masked]
            if not known.size or np.all(np.equal(np.mod(known, 1), 0)):
                counts.append(name)
                notes.append(f"column '{name}' read as a count (unnamed whole numbers)")
            else:
                values.append(name)
    else:
        # Beside named statistics, unnamed numeric columns are labels (year, code).
        dims.extend(unnamed)
    if len(regression) >= 2:
        kind = "regression"
    elif counts and values:
        kind = "magnitude"
    elif counts:
        kind = "frequency" if not percent else "percent"
    elif percent:
        kind = "percent"
    elif values:
        kind = "magnitude"
        notes.append("no count column found for the values")
    else:
        kind = "unknown"
    denominator = None
    if percent and counts:
        # A count beside a percentage is its denominator only when its name says so;
        # otherwise the percent rule decides from the data or sends the table to review.
        denom = [c for c in counts if re.search(r"(denom|total|base|分母|總數)", c, re.I)]
        denominator = denom[0] if denom else None
    return TableSpec(
        kind=kind, counts=tuple(counts), institution_counts=tuple(inst),
        dimensions=tuple(dims), values=tuple(values), extremes=tuple(extremes),
        percent=tuple(percent), denominator=denominator, residual_df=df_col,
        contributions=tuple(contrib), per_record=tuple(per_record), source="inferred",
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class ManifestEntry:
    """One ``files`` entry of a manifest, with its path resolved."""

    path: Path
    kind: str
    fields: dict[str, Any]


def read_manifest(path: Path) -> dict[Path, ManifestEntry]:
    """Read a JSON or YAML export manifest; paths are relative to the manifest.

    Raises
    ------
    ManifestError
        The manifest is unreadable, lacks ``files``, or an entry is malformed.
    """
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else parse_yaml(text)
    except (OSError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ManifestError(f"manifest {path}: cannot read: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise ManifestError(f"manifest {path}: must be an object with a 'files' list")
    entries: dict[Path, ManifestEntry] = {}
    for number, item in enumerate(data["files"], start=1):
        if not isinstance(item, dict) or "path" not in item:
            raise ManifestError(f"manifest {path}: files[{number}] needs a 'path'")
        kind = item.get("kind")
        if kind not in MANIFEST_KINDS:
            raise ManifestError(
                f"manifest {path}: files[{number}] ({item['path']}): kind {kind!r} is not one "
                f"of {', '.join(MANIFEST_KINDS)}"
            )
        for key in ("counts", "dimensions", "values", "percent", "extremes", "contributions"):
            if key in item and not (
                isinstance(item[key], list) and all(isinstance(v, str) for v in item[key])
            ):
                raise ManifestError(
                    f"manifest {path}: files[{number}] ({item['path']}): {key!r} must be a "
                    "list of column names"
                )
        resolved = (path.parent / item["path"]).resolve()
        entries[resolved] = ManifestEntry(path=resolved, kind=kind, fields=item)
    return entries


def spec_from_manifest(entry: ManifestEntry, evidence: Evidence) -> TableSpec:
    """Build the :class:`TableSpec` a manifest declares, checking the columns exist.

    Raises
    ------
    ManifestError
        A declared column is not in the table.
    """
    frame = evidence.table
    f = entry.fields
    columns = set(frame.columns) if frame is not None else set()
    named: list[str] = []
    for key in ("counts", "dimensions", "values", "percent", "extremes", "contributions"):
        named.extend(f.get(key, []))
    for key in ("denominator",):
        if f.get(key):
            named.append(f[key])
    if isinstance(f.get("residual_df"), str) and not str(f["residual_df"]).isdigit():
        named.append(f["residual_df"])
    missing = [c for c in named if c not in columns]
    if frame is not None and missing:
        raise ManifestError(
            f"{evidence.file}: manifest names column(s) {missing} that the table lacks; "
            f"columns are {frame.columns}"
        )
    inferred = infer_spec(evidence) if frame is not None else None
    counts = tuple(f.get("counts", ()))
    residual_df = f.get("residual_df")
    if isinstance(residual_df, str) and residual_df.isdigit():
        residual_df = int(residual_df)
    return TableSpec(
        kind=entry.kind,
        counts=counts,
        institution_counts=tuple(c for c in counts if _INSTITUTION.search(c))
        + tuple(f.get("institution_counts", ())),
        dimensions=tuple(f.get("dimensions", ())),
        values=tuple(f.get("values", ())),
        extremes=tuple(f.get("extremes", ()))
        or tuple(v for v in f.get("values", ()) if _EXTREME.search(v)),
        percent=tuple(f.get("percent", ())),
        denominator=f.get("denominator"),
        residual_df=residual_df,
        contributions=tuple(f.get("contributions", ()))
        or (inferred.contributions if inferred else ()),
        per_record=inferred.per_record if inferred else (),
        source="manifest",
    )
