"""The catalog's data model: source files, columns, code sets, and their consistency rules.

Everything is a frozen pydantic model with ``extra="forbid"``, so a misspelt key in a YAML
definition is refused instead of silently ignored. Rules that need only one file (duplicate
columns, unknown key columns, bad regexes, role/identifier/coarsen combinations) are checked
on :class:`FileDef`; rules that span files (parent, references, code sets) are checked on
:class:`Catalog`.
"""

from __future__ import annotations

import re
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from enclave.errors import ConfigError, NotFound

ColumnType = Literal["string", "integer", "decimal", "date", "yearmonth"]
Role = Literal[
    "key", "direct_identifier", "quasi_identifier", "sensitive", "measure", "attribute", "drop"
]
IdentifierKind = Literal["person", "institution", "physician", "insured_unit"]
Coarsen = Literal["year", "year_month", "none"]
Classification = Literal["A", "B", "C"]
FileKind = Literal["reference", "registry", "enrollment", "claims", "orders"]
Severity = Literal["warn", "error"]
CheckName = Literal["tw_national_id", "institution_code", "icd10cm", "icd10pcs", "ban"]

# Order in which files are listed and ingested: lookups first, then people, then claims,
# then orders (whose parent claims must already be known).
KIND_ORDER: dict[str, int] = {
    "reference": 0,
    "registry": 1,
    "enrollment": 2,
    "claims": 3,
    "orders": 4,
}
NUMERIC_TYPES = frozenset({"integer", "decimal"})


class CatalogError(ConfigError):
    """A catalog definition is invalid; the message names the YAML file and the field."""


class CatalogNotFound(NotFound):
    """A file, column or code set name is not in the catalog; the message lists known names."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Label(_Frozen):
    """A bilingual text."""

    en: str = Field(min_length=1)
    zh: str = Field(min_length=1)


class Range(_Frozen):
    """Inclusive numeric bounds; either side may be open."""

    min: float | None = None
    max: float | None = None


class Column(_Frozen):
    """One column of a source file as the custodian holds it (before pseudonymization)."""

    name: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    type: ColumnType
    width: int = Field(gt=0)
    label: Label
    required: bool = False
    pattern: str | None = None
    codes: str | None = None
    range: Range | None = None
    check: CheckName | None = None
    role: Role
    identifier: IdentifierKind | None = None
    coarsen: Coarsen | None = None
    classification: Classification | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Column:
        where = f"column {self.name}"
        if self.role == "direct_identifier" and self.identifier is None:
            raise ValueError(
                f"{where}: field 'identifier' is required when role is direct_identifier"
            )
        if self.role != "direct_identifier" and self.identifier is not None:
            raise ValueError(
                f"{where}: field 'identifier' is only allowed when role is direct_identifier "
                f"(role is {self.role})"
            )
        if self.coarsen is not None and self.role != "quasi_identifier":
            raise ValueError(
                f"{where}: field 'coarsen' is only allowed when role is quasi_identifier "
                f"(role is {self.role})"
            )
        if self.range is not None and self.type not in NUMERIC_TYPES:
            raise ValueError(f"{where}: field 'range' needs a numeric type (type is {self.type})")
        if self.pattern is not None:
            _compile(self.pattern, f"{where}: field 'pattern'")
            if "\\d" in self.pattern:
                # \d also matches full-width and other Unicode digits (e.g. "２０２３"), which
                # Python's and Polars' regex engines would accept but no HWDC field allows.
                raise ValueError(f"{where}: field 'pattern' uses \\d (any Unicode digit); write [0-9]")
        return self


class ParentRef(_Frozen):
    """The claim an order row belongs to (hard integrity rule: orphans are quarantined)."""

    file: str
    columns: list[str] = Field(min_length=1)


class Reference(_Frozen):
    """A soft integrity rule: values should exist in another file (reported, not quarantined).

    ``where`` restricts the rule to rows whose column holds one of the listed values
    (e.g. only drug orders, ``{ORDER_TYPE: ["1"]}``).
    """

    columns: list[str] = Field(min_length=1)
    file: str
    file_columns: list[str] = Field(min_length=1)
    severity: Severity = "warn"
    where: dict[str, list[str]] | None = None


class ChildSum(_Frozen):
    """Sum of ``column`` over this order file's rows (filtered by ``where``) per parent claim
    equals ``parent_column`` of the parent row."""

    column: str
    where: dict[str, list[str]] | None = None
    parent_column: str


class Invariant(_Frozen):
    """A consistency rule between columns. Exactly one of ``expr`` or ``child_sum``.

    ``expr`` is a SQL boolean expression over the row's columns (Polars SQL dialect, e.g.
    ``pl.sql_expr``); a row is consistent when it is true or null.
    """

    name: str
    description: Label
    severity: Severity = "warn"
    expr: str | None = None
    child_sum: ChildSum | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Invariant:
        if (self.expr is None) == (self.child_sum is None):
            raise ValueError(f"invariant {self.name}: give exactly one of 'expr' or 'child_sum'")
        return self


class FileDef(_Frozen):
    """One source file: its identity, grain, keys, integrity rules and columns."""

    name: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    label: Label
    description: Label
    kind: FileKind
    grain: str
    source_pattern: str
    year_column: str
    classification: Classification
    primary_key: list[str] = Field(min_length=1)
    parent: ParentRef | None = None
    references: list[Reference] = Field(default_factory=list)
    columns: list[Column] = Field(min_length=1)
    invariants: list[Invariant] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> FileDef:
        seen: set[str] = set()
        for col in self.columns:
            if col.name in seen:
                raise ValueError(f"field 'columns': duplicate column name {col.name}")
            seen.add(col.name)
        regex = _compile(self.source_pattern, "field 'source_pattern'")
        if "year" not in regex.groupindex:
            raise ValueError("field 'source_pattern': needs a named group (?P<year>...)")
        if self.year_column not in seen:
            raise ValueError(f"field 'year_column': column {self.year_column} does not exist")
        _known(self.primary_key, seen, "primary_key")
        if self.kind == "orders" and self.parent is None:
            raise ValueError("field 'parent': an orders file needs a parent claim file")
        if self.parent is not None:
            _known(self.parent.columns, seen, "parent.columns")
        for i, ref in enumerate(self.references):
            _known(ref.columns, seen, f"references[{i}].columns")
            _known(list(ref.where or {}), seen, f"references[{i}].where")
            if len(ref.columns) != len(ref.file_columns):
                raise ValueError(
                    f"field 'references[{i}]': columns and file_columns differ in length"
                )
        for i, inv in enumerate(self.invariants):
            if inv.child_sum is not None:
                if self.parent is None:
                    raise ValueError(f"field 'invariants[{i}].child_sum': file has no parent")
                _known([inv.child_sum.column], seen, f"invariants[{i}].child_sum.column")
                _known(list(inv.child_sum.where or {}), seen, f"invariants[{i}].child_sum.where")
            else:
                try:
                    names = pl.sql_expr(inv.expr).meta.root_names()
                except Exception as exc:  # polars raises several types for bad SQL
                    raise ValueError(
                        f"field 'invariants[{i}].expr': not valid SQL: {exc}"
                    ) from None
                _known(names, seen, f"invariants[{i}].expr")
        return self

    def column(self, name: str) -> Column:
        """Return the column called ``name``.

        Raises
        ------
        CatalogNotFound
            If the file has no such column; the message lists the known columns.
        """
        for col in self.columns:
            if col.name == name:
                return col
        raise CatalogNotFound(
            f"{self.name} has no column {name!r}; known: {', '.join(self.column_names)}"
        )

    @property
    def column_names(self) -> list[str]:
        """Column names in file order."""
        return [c.name for c in self.columns]

    @property
    def identifier_columns(self) -> list[Column]:
        """Columns replaced by stage-1 tokens (role ``direct_identifier``)."""
        return [c for c in self.columns if c.role == "direct_identifier"]

    @property
    def drop_columns(self) -> list[Column]:
        """Columns never written to the vault (role ``drop``: names, addresses, phones)."""
        return [c for c in self.columns if c.role == "drop"]

    @property
    def quasi_columns(self) -> list[Column]:
        """Columns that can re-identify in combination (role ``quasi_identifier``)."""
        return [c for c in self.columns if c.role == "quasi_identifier"]

    def column_classification(self, name: str) -> str:
        """The column's classification, defaulting to the file's."""
        return self.column(name).classification or self.classification

    def match_source(self, filename: str) -> int | None:
        """Return the data year if ``filename`` is a source file of this kind, else None."""
        m = re.match(self.source_pattern, filename)
        return int(m.group("year")) if m else None


class Chapter(_Frozen):
    """One ICD-10-CM chapter: inclusive range of 3-character categories."""

    chapter: int
    range: tuple[str, str]
    en: str
    zh: str


class CodeSet(_Frozen):
    """A named set of allowed codes with bilingual labels."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: Label
    codes: dict[str, Label] = Field(min_length=1)
    chapters: list[Chapter] | None = None

    @property
    def values(self) -> list[str]:
        """The allowed codes."""
        return list(self.codes)


class Catalog(_Frozen):
    """All file definitions and code sets, checked against each other."""

    files_by_name: dict[str, FileDef]
    codesets: dict[str, CodeSet]
    root: str | None = None

    @model_validator(mode="after")
    def _cross_check(self) -> Catalog:
        for fd in self.files_by_name.values():
            where = self._where(fd.name)
            for col in fd.columns:
                if col.codes is not None and col.codes not in self.codesets:
                    raise CatalogError(
                        f"{where}: column {col.name}: field 'codes': unknown code set "
                        f"{col.codes!r}; known: {', '.join(sorted(self.codesets))}"
                    )
            if fd.parent is not None:
                parent = self._target(fd, fd.parent.file, "parent.file")
                self._cols_exist(fd, parent, fd.parent.columns, "parent.columns")
                for inv in fd.invariants:
                    if inv.child_sum is not None:
                        self._cols_exist(
                            fd,
                            parent,
                            [inv.child_sum.parent_column],
                            f"invariants[{inv.name}].child_sum.parent_column",
                        )
            for i, ref in enumerate(fd.references):
                target = self._target(fd, ref.file, f"references[{i}].file")
                self._cols_exist(fd, target, ref.file_columns, f"references[{i}].file_columns")
        return self

    def _where(self, name: str) -> str:
        return f"{self.root}/files/{name}.yaml" if self.root else f"{name}.yaml"

    def _target(self, fd: FileDef, name: str, field: str) -> FileDef:
        if name not in self.files_by_name:
            raise CatalogError(
                f"{self._where(fd.name)}: field '{field}': unknown file {name!r}; "
                f"known: {', '.join(sorted(self.files_by_name))}"
            )
        return self.files_by_name[name]

    def _cols_exist(self, fd: FileDef, target: FileDef, cols: list[str], field: str) -> None:
        missing = [c for c in cols if c not in target.column_names]
        if missing:
            raise CatalogError(
                f"{self._where(fd.name)}: field '{field}': {target.name} has no column(s) "
                f"{', '.join(missing)}"
            )

    @property
    def files(self) -> list[FileDef]:
        """All files: reference, registry, enrollment first, then claims, then orders."""
        return sorted(self.files_by_name.values(), key=lambda f: (KIND_ORDER[f.kind], f.name))

    def file(self, name: str) -> FileDef:
        """Return the file definition called ``name``.

        Raises
        ------
        CatalogNotFound
            If there is no such file; the message lists the known names.
        """
        try:
            return self.files_by_name[name]
        except KeyError:
            raise CatalogNotFound(
                f"no catalog file {name!r}; known: {', '.join(f.name for f in self.files)}"
            ) from None

    def codeset(self, name: str) -> CodeSet:
        """Return the code set called ``name`` (raises :class:`CatalogNotFound`)."""
        try:
            return self.codesets[name]
        except KeyError:
            raise CatalogNotFound(
                f"no code set {name!r}; known: {', '.join(sorted(self.codesets))}"
            ) from None

    def match_source(self, filename: str) -> tuple[FileDef, int] | None:
        """Identify a source file by its name: the file definition and the data year.

        Parameters
        ----------
        filename
            Base name of the file, e.g. ``H_NHI_OPDTE_2023.csv`` (a directory part is ignored).
        """
        base = filename.replace("\\", "/").rsplit("/", 1)[-1]
        for fd in self.files:
            year = fd.match_source(base)
            if year is not None:
                return fd, year
        return None


def _compile(pattern: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{where}: invalid regular expression {pattern!r}: {exc}") from None


def _known(cols: list[str], known: set[str], field: str) -> None:
    missing = [c for c in cols if c not in known]
    if missing:
        raise ValueError(f"field '{field}': column(s) {', '.join(missing)} do not exist")
