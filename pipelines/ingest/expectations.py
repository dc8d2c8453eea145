"""great-expectations suites generated from the catalog, run on each column's distinct values.

Every column-level rule of :mod:`pipelines.ingest.rules` has a great-expectations twin
(``expect_column_values_to_not_be_null``, ``…_to_match_regex``, ``…_to_be_in_set``,
``…_to_match_strftime_format``, ``…_to_be_between`` and the custom
``expect_column_values_to_pass_catalog_check`` for checksums and code structures). Whether a
value passes a map rule depends only on the value, so each suite runs on the *distinct values*
a column held in the batch (a few hundred for a code, one per person for an ID), not on every
row: exact, and fast enough for hundreds of millions of rows. The values great-expectations
reports as unexpected must equal those the compiled Polars rules reject; any disagreement fails
the batch closed (two independent implementations of one rule set).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    import pandas as pd

from catalog import Catalog
from catalog.checks import CHECKS
from catalog.model import Column, FileDef
from pipelines.ingest.rules import CHECK_RULES, column_rules

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


def _gx():
    # great-expectations is slow to import and chatty; load it lazily and quietly.
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    # great-expectations imports altair → jsonschema, which builds an IRI grammar (about a
    # second of CPU) when the optional rfc3987_syntax package is present; no expectation here
    # checks IRIs, so jsonschema is told the package is absent (a None entry means "not
    # installed" to the import system). Only this process's jsonschema is affected.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    # The KL-divergence and KS-test expectations import scipy.stats at module level (measured:
    # 0.6 to 0.8 s of CPU, a quarter of the whole import) and use it only when such an
    # expectation runs, which the catalog's suites never do. It is bound lazily: the module
    # loads on its first attribute access, so nothing breaks if one is ever used. (altair, the
    # other heavy one, cannot be deferred this way: a plain ``import altair`` reads the module's
    # ``__spec__``, which loads it.)
    for name in _DEFERRED_IMPORTS:
        _defer_import(name)
    import great_expectations as gx

    return gx


_DEFERRED_IMPORTS = ("scipy.stats",)


def _defer_import(name: str) -> None:
    """Put a lazily loading module ``name`` into ``sys.modules`` (the standard library's
    ``importlib.util.LazyLoader``), unless it is loaded already or not installed."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def warm_up() -> None:
    """Import great-expectations and register the custom expectation (safe in a thread)."""
    _catalog_check_expectation()


_CUSTOM: dict[str, Any] = {}
_CUSTOM_LOCK = threading.Lock()


def _catalog_check_expectation():
    """Register (once) the custom expectation that applies a named catalog check."""
    with _CUSTOM_LOCK:
        return _register_catalog_check()


def _register_catalog_check():
    if "cls" in _CUSTOM:
        return _CUSTOM["cls"]
    _gx()
    from great_expectations.execution_engine import PandasExecutionEngine
    from great_expectations.expectations.expectation import ColumnMapExpectation
    from great_expectations.expectations.metrics import (
        ColumnMapMetricProvider,
        column_condition_partial,
    )

    class ColumnValuesPassCatalogCheck(ColumnMapMetricProvider):
        condition_metric_name = "column_values.pass_catalog_check"
        condition_value_keys = ("check",)

        @column_condition_partial(engine=PandasExecutionEngine)
        def _pandas(cls, column, check, **kwargs):
            named = CHECKS[check]
            if named.array is not None:
                import pandas as pd

                return pd.Series(named.array(column.tolist()), index=column.index)
            return column.map(lambda value: bool(named.scalar(value)))

    class ExpectColumnValuesToPassCatalogCheck(ColumnMapExpectation):
        """Column values pass a catalog check (Taiwan ID checksum, ICD-10-CM structure ...)."""

        check: str
        map_metric = "column_values.pass_catalog_check"
        success_keys = ("check", "mostly")

    _CUSTOM["cls"] = ExpectColumnValuesToPassCatalogCheck
    _CUSTOM["metric"] = ColumnValuesPassCatalogCheck
    return ExpectColumnValuesToPassCatalogCheck


@dataclass(frozen=True)
class PlannedExpectation:
    rule: str
    column: str
    expectation: Any
    numeric: bool = False


def plan_column(column: Column, catalog: Catalog) -> list[PlannedExpectation]:
    """The great-expectations twins of one column's rules."""
    gx = _gx()
    e = gx.expectations
    name = column.name
    out: list[PlannedExpectation] = []
    if column.required:
        out.append(PlannedExpectation("missing_value", name, e.ExpectColumnValuesToNotBeNull(column=name)))
    if column.type == "date":
        out.append(
            PlannedExpectation(
                "invalid_date",
                name,
                e.ExpectColumnValuesToMatchRegex(column=name, regex=r"^[0-9]{8}$"),
            )
        )
        out.append(
            PlannedExpectation(
                "invalid_date",
                name,
                e.ExpectColumnValuesToMatchStrftimeFormat(column=name, strftime_format="%Y%m%d"),
            )
        )
    elif column.type == "yearmonth":
        out.append(
            PlannedExpectation(
                "invalid_date",
                name,
                e.ExpectColumnValuesToMatchRegex(column=name, regex=r"^[0-9]{4}(?:0[1-9]|1[0-2])$"),
            )
        )
    elif column.type == "integer":
        out.append(
            PlannedExpectation("not_integer", name, e.ExpectColumnValuesToMatchRegex(column=name, regex=r"^-?[0-9]+$"))
        )
    elif column.type == "decimal":
        out.append(
            PlannedExpectation(
                "not_decimal",
                name,
                e.ExpectColumnValuesToMatchRegex(column=name, regex=r"^-?[0-9]+(?:\.[0-9]+)?$"),
            )
        )
    if column.range is not None and column.type in ("integer", "decimal"):
        out.append(
            PlannedExpectation(
                "out_of_range",
                name,
                e.ExpectColumnValuesToBeBetween(column=name, min_value=column.range.min, max_value=column.range.max),
                numeric=True,
            )
        )
    if column.codes:
        out.append(
            PlannedExpectation(
                "unknown_code",
                name,
                e.ExpectColumnValuesToBeInSet(column=name, value_set=list(catalog.codeset(column.codes).values)),
            )
        )
    if column.pattern and column.type not in ("date", "yearmonth"):
        out.append(
            PlannedExpectation("pattern", name, e.ExpectColumnValuesToMatchRegex(column=name, regex=column.pattern))
        )
    if column.check:
        cls = _catalog_check_expectation()
        out.append(
            PlannedExpectation(
                CHECK_RULES.get(column.check, f"check_{column.check}"),
                name,
                cls(column=name, check=column.check),
            )
        )
    return out


@dataclass
class ColumnValidation:
    column: str
    distinct_values: int
    results: list[dict[str, Any]]
    disagreements: list[str]


def _bucket(n: int) -> int:
    """Columns whose distinct counts are within a factor of four share one validation run."""
    return (max(n, 1).bit_length() + 1) // 2


def _padded(columns: dict[str, pd.Series]) -> pd.DataFrame:
    """One frame of several columns of different lengths, each padded to the longest by
    repeating one of its own values: the set of values (all the checks look at) is unchanged."""
    import pandas as pd

    length = max(len(v) for v in columns.values())
    out = {}
    for name, values in columns.items():
        values = values.reset_index(drop=True)
        if len(values) < length:
            fill = values.iloc[0] if len(values) else None
            values = pd.concat(
                [values, pd.Series([fill] * (length - len(values)), dtype=values.dtype)], ignore_index=True
            )
        out[name] = values
    return pd.DataFrame(out)


def validate_distinct(definition: FileDef, catalog: Catalog, distinct: dict[str, pl.Series]) -> list[ColumnValidation]:
    """Run each column's suite on its distinct values and cross-check with the Polars rules.

    A great-expectations run has a fixed cost of tens of milliseconds, so columns of similar
    size are validated together: one run per size bucket and value kind (text / numeric), on
    a frame whose shorter columns are padded with their own values.
    """
    import pandas as pd

    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # The CLI shows its own progress; great-expectations' per-metric bars would flood stderr.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas(f"{definition.name}_distinct")
    asset = source.add_dataframe_asset("column")
    batch_def = asset.add_batch_definition_whole_dataframe("distinct values")
    # (bucket, numeric) -> column name -> (values as pandas, planned expectations)
    groups: dict[tuple[int, bool], dict[str, tuple[pd.Series, list[PlannedExpectation]]]] = {}
    checked: list[Column] = []
    for column in definition.columns:
        planned = plan_column(column, catalog)
        values = distinct.get(column.name)
        if not planned or values is None:
            continue
        checked.append(column)
        text = pd.Series(values.to_list(), dtype=object)
        for numeric_group in (False, True):
            items = [item for item in planned if item.numeric == numeric_group]
            if items:
                series = pd.to_numeric(text, errors="coerce").dropna() if numeric_group else text
                groups.setdefault((_bucket(len(series)), numeric_group), {})[column.name] = (series, items)
    results: dict[str, list[dict[str, Any]]] = {c.name: [] for c in checked}
    ge_bad: dict[str, dict[str, set]] = {c.name: {} for c in checked}
    for (bucket, numeric_group), members in sorted(groups.items()):
        frame = _padded({name: series for name, (series, _items) in members.items()})
        name = f"{definition.name}.b{bucket}.{'num' if numeric_group else 'text'}"
        suite = context.suites.add(gx.ExpectationSuite(name=name))
        order = [(col, item) for col, (_series, items) in members.items() for item in items]
        for _col, item in order:
            suite.add_expectation(item.expectation)
        vd = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch_def, suite=suite))
        run = vd.run(batch_parameters={"dataframe": frame}, result_format={"result_format": "COMPLETE"})
        if len(run.results) != len(order):
            raise RuntimeError(f"great-expectations returned {len(run.results)} results for {len(order)}")
        for (col, item), res in zip(order, run.results, strict=True):
            if (
                res.expectation_config.type != item.expectation.expectation_type
                or res.expectation_config.kwargs.get("column") != col
            ):
                raise RuntimeError(f"great-expectations reordered the results of {name}")
            if res.exception_info and res.exception_info.get("raised_exception"):
                raise RuntimeError(
                    f"great-expectations failed on {definition.name}.{col}: "
                    f"{res.exception_info.get('exception_message')}"
                )
            values = distinct[col]
            unexpected = res.result.get("unexpected_list") or []
            if item.rule == "missing_value":
                unexpected = [None] if values.null_count() else []
            bad = {None if pd.isna(v) else str(v) for v in unexpected}
            if item.numeric:
                # Map numeric outliers back to the source text.
                bad_numbers = {float(v) for v in unexpected}
                bad = {str(v) for v in values.drop_nulls().to_list() if _as_float(v) in bad_numbers}
            ge_bad[col].setdefault(item.rule, set()).update(bad)
            results[col].append(
                {
                    "expectation": res.expectation_config.type,
                    "kwargs": {
                        k: v for k, v in res.expectation_config.kwargs.items() if k not in ("batch_id", "value_set")
                    },
                    "rule": item.rule,
                    "success": bool(res.success),
                    "distinct_unexpected": len(bad),
                    "sample_unexpected": sorted(x for x in bad if x is not None)[:10],
                }
            )
    return [
        ColumnValidation(
            c.name,
            distinct[c.name].len(),
            results[c.name],
            _cross_check(c, catalog, distinct[c.name], ge_bad[c.name]),
        )
        for c in checked
    ]


def _as_float(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _cross_check(column: Column, catalog: Catalog, values: pl.Series, ge_bad: dict[str, set]) -> list[str]:
    frame = pl.DataFrame({column.name: values})
    ours: dict[str, set] = {}
    for rule in column_rules(column, catalog):
        failing = frame.filter(rule.fail.fill_null(False)).get_column(column.name).to_list()
        ours.setdefault(rule.name, set()).update(failing)
    problems = []
    for rule in sorted(set(ours) | set(ge_bad)):
        a, b = ours.get(rule, set()), ge_bad.get(rule, set())
        if a != b:
            only_ours = sorted(str(x) for x in a - b)[:5]
            only_ge = sorted(str(x) for x in b - a)[:5]
            problems.append(f"{column.name}/{rule}: rules-only {only_ours}, gx-only {only_ge}")
    return problems
