"""What one project may see: the approved files, years and columns, checked against the catalog.

The plan is built from the steward's decisions (:func:`enclave.projects.service.approved_columns`
and ``approved_file_years``) and the catalog; it names, per file, the columns in catalog
order, which of them are identifiers (and of which kind), which are coarsened, and how the
file's rows are tied to a person for opt-out exclusion (its own person column, or its parent
claim's key for order files that carry no person).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from catalog import Catalog, FileDef
from pipelines.provision.errors import SelectionError


@dataclass(frozen=True)
class FilePlan:
    """The approved part of one source file type."""

    file: str
    years: tuple[int, ...]
    columns: tuple[str, ...]
    identifiers: dict[str, str] = field(default_factory=dict)  # column -> kind (approved only)
    coarsen: dict[str, str] = field(default_factory=dict)  # column -> year_month / year
    person_column: str | None = None  # the row's subject, for opt-out exclusion (vault side)
    person_required: bool = False  # the catalog requires it: ingest guarantees no nulls
    other_person_columns: tuple[str, ...] = ()  # further person columns (e.g. ENROL.ID1)
    parent_file: str | None = None  # order files: exclusion through the parent claim
    parent_key: tuple[str, ...] = ()

    @property
    def kinds(self) -> set[str]:
        return set(self.identifiers.values())


def _person_columns(fd: FileDef) -> list[str]:
    return [c.name for c in fd.columns if c.identifier == "person"]


def plan_file(catalog: Catalog, file: str, years: list[int], columns: list[str]) -> FilePlan:
    """The plan of one file; refuses columns unknown to the catalog or marked ``drop``."""
    try:
        fd = catalog.file(file)
    except Exception as exc:  # CatalogNotFound, or a KeyError from an older catalog
        raise SelectionError(f"project selection names file {file!r}, which the catalog lacks") from exc
    known = {c.name: c for c in fd.columns}
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise SelectionError(f"{file}: approved column(s) {unknown} are not in the catalog")
    dropped = [c for c in columns if known[c].role == "drop"]
    if dropped:
        raise SelectionError(f"{file}: column(s) {dropped} have role 'drop' and are never provided")
    ordered = tuple(c.name for c in fd.columns if c.name in set(columns))
    identifiers = {n: known[n].identifier for n in ordered if known[n].identifier}
    coarsen = {
        n: known[n].coarsen for n in ordered if known[n].coarsen not in (None, "none")
    }
    persons = _person_columns(fd)
    parent_file, parent_key = None, ()
    if not persons and fd.parent is not None:
        parent_file, parent_key = fd.parent.file, tuple(fd.parent.columns)
    return FilePlan(
        file=file,
        years=tuple(sorted(set(years))),
        columns=ordered,
        identifiers=identifiers,  # type: ignore[arg-type]
        coarsen=coarsen,  # type: ignore[arg-type]
        person_column=persons[0] if persons else None,
        person_required=bool(persons) and known[persons[0]].required,
        other_person_columns=tuple(persons[1:]),
        parent_file=parent_file,
        parent_key=parent_key,
    )


def plan_selection(
    catalog: Catalog, columns: dict[str, list[str]], file_years: list[tuple[str, int]]
) -> list[FilePlan]:
    """Plans for every file with at least one approved column and one approved year.

    Parameters
    ----------
    columns : file -> approved column names.
    file_years : approved (file, year) pairs.
    """
    years: dict[str, list[int]] = {}
    for file, year in file_years:
        years.setdefault(file, []).append(year)
    plans = []
    for file in sorted(set(columns) & set(years)):
        if columns[file]:
            plans.append(plan_file(catalog, file, years[file], columns[file]))
    if not plans:
        raise SelectionError("the project has no approved file with both approved columns and years")
    return plans
