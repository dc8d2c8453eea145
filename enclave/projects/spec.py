"""The application form (SPEC.yaml) as a pydantic model, and its checks at submission.

Owns: the shape of an application and every reason an application is refused at the door
(unknown files or columns, a column without a reason, an expired IRB, an applicant who is not
the IRB's principal or co-principal investigator, a processor from another unit without proof
of participation). Rules about *people* (custodians never join) stay in :mod:`enclave.roles`.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from catalog import Catalog
from enclave.errors import InputError
from enclave.yaml_text import parse_yaml


class ApplicationRefused(InputError):
    """The application breaks a submission rule; the message lists every problem found."""


class ProjectType(StrEnum):
    """Project types (seed 004 Table 16)."""

    OFFICIAL = "official"
    AGENCY_COMMISSIONED = "agency_commissioned"
    INSURER_COMMISSIONED = "insurer_commissioned"
    INDEPENDENT = "independent"


class MemberRole(StrEnum):
    PI = "pi"
    CO_PI = "co_pi"
    PROCESSOR = "processor"


class _Form(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IRB(_Form):
    number: str = Field(min_length=1)
    board: str = Field(min_length=1)
    expiry: date
    principal_investigator: str = Field(min_length=1)
    co_principal_investigators: list[str] = Field(default_factory=list)
    # Path of the certificate file, relative to the spec file.
    document: str = Field(min_length=1)


class DataRequest(_Form):
    file: str
    years: list[int] = Field(min_length=1)
    # column name -> reason (minimum necessary: every column needs one).
    columns: dict[str, str | None] = Field(min_length=1)


class WorkingDays(_Form):
    half_days: int = Field(default=0, ge=0)
    full_days: int = Field(default=0, ge=0)

    @property
    def in_half_days(self) -> int:
        return self.half_days + 2 * self.full_days


class Person(_Form):
    username: str
    role: MemberRole = MemberRole.PROCESSOR
    unit: str = Field(min_length=1)
    proof: str | None = Field(default=None, description="Proof of participation (another unit).")


class ProjectSpec(_Form):
    """One application as submitted."""

    applicant: str
    institution: str = Field(min_length=1)
    project_type: ProjectType
    title: str = Field(min_length=1)
    purpose: str = Field(min_length=1)
    irb: IRB | None = None
    cohort_criteria: str = Field(min_length=1)
    data: list[DataRequest] = Field(min_length=1)
    working_days: WorkingDays = Field(default_factory=WorkingDays)
    computers: int = Field(default=1, ge=1)
    personnel: list[Person] = Field(default_factory=list)


def load_spec(path: Path) -> ProjectSpec:
    """Read and validate a SPEC.yaml file, naming the file and field on any error."""
    if not path.is_file():
        raise InputError(f"application spec {path} does not exist")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML: {exc}") from exc
    return parse_spec(data, source=str(path))


def parse_spec(data: object, *, source: str = "spec") -> ProjectSpec:
    """Validate a mapping as a :class:`ProjectSpec`."""
    try:
        return ProjectSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InputError(f"{source}: {problems}") from exc


def check_data_request(requests: list[DataRequest], catalog: Catalog, *, today: date) -> list[str]:
    """Problems with requested files, years and columns (empty when all is well)."""
    problems: list[str] = []
    known = {f.name: f for f in catalog.files}
    seen: set[str] = set()
    for i, req in enumerate(requests):
        where = f"data[{i}] ({req.file})"
        if req.file in seen:
            problems.append(f"{where}: file {req.file} is requested twice; merge the entries")
        seen.add(req.file)
        fdef = known.get(req.file)
        if fdef is None:
            problems.append(f"{where}: unknown file {req.file!r}; "
                            f"known: {', '.join(sorted(known))}")
            continue
        for year in req.years:
            if not 1995 <= year <= today.year:
                problems.append(f"{where}: data year {year} is outside 1995..{today.year}")
        for column, reason in req.columns.items():
            if column not in fdef.column_names:
                problems.append(f"{where}: unknown column {column!r} in {req.file}")
                continue
            if fdef.column(column).role == "drop":
                problems.append(f"{where}: column {column} is never provided "
                                "(names, addresses and phone numbers are not released)")
            if reason is None or not str(reason).strip():
                problems.append(f"{where}: column {column} has no reason; "
                                "state why the study needs it (minimum necessary)")
    return problems


def check_irb(spec: ProjectSpec, *, applicant_names: set[str], today: date,
              exempt_types: list[str]) -> list[str]:
    """Problems with the IRB certificate: missing, expired, applicant not (co-)PI."""
    if spec.irb is None:
        if spec.project_type.value in exempt_types:
            return []
        return [f"irb: a {spec.project_type.value} research application needs an IRB "
                "certificate (number, board, expiry, investigators, document)"]
    problems = []
    if spec.irb.expiry < today:
        problems.append(f"irb: certificate {spec.irb.number} expired on "
                        f"{spec.irb.expiry.isoformat()}; attach a valid approval")
    investigators = {spec.irb.principal_investigator, *spec.irb.co_principal_investigators}
    if not {n.strip().casefold() for n in investigators} & {
        n.strip().casefold() for n in applicant_names
    }:
        problems.append(
            f"irb: applicant {spec.applicant} is not the principal or co-principal "
            f"investigator of IRB {spec.irb.number} (investigators: "
            f"{', '.join(sorted(investigators))})"
        )
    return problems


def check_personnel(spec: ProjectSpec) -> list[str]:
    """Problems with the personnel list (proof of participation from another unit)."""
    problems = []
    names = [p.username for p in spec.personnel]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"personnel: {name} is listed more than once")
    for p in spec.personnel:
        if p.username == spec.applicant:
            problems.append(f"personnel: the applicant {p.username} is the PI already; "
                            "do not list them again")
        if p.role is MemberRole.PI:
            problems.append(f"personnel: {p.username}: only the applicant is the PI")
        if not same_unit(p.unit, spec.institution) and not p.proof:
            problems.append(
                f"personnel: {p.username} belongs to {p.unit!r}, not the applicant's unit "
                f"{spec.institution!r}; attach proof of participation (proof:)"
            )
    return problems


def same_unit(a: str, b: str) -> bool:
    """Units compare case- and space-insensitively."""
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()
