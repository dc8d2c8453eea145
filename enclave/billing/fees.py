"""Pure fee computation from ``policies/fee_schedule.yaml`` (DESIGN §7). Exact integer NT$.

Owns the arithmetic of every fee: data processing per file-year (with its minimum), on-site
working days and extra computers, the column-change rule, data retention, analysis on the
applicant's behalf and the government waiver. Nothing here touches the state store; callers
pass counts and get itemised :class:`FeeLine` lists back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from fractions import Fraction
from math import ceil

from pydantic import Field

from enclave.config import Settings
from enclave.errors import InputError
from enclave.policies import PolicyModel, load_policy


class DataProcessingFees(PolicyModel):
    per_column_per_file_per_year: int = Field(ge=0)
    minimum_per_file_year: int = Field(ge=0)


class OnsiteFees(PolicyModel):
    half_day: int = Field(ge=0)
    full_day: int = Field(ge=0)
    overnight_run: int = Field(ge=0)
    extra_computer_per_half_day: int = Field(ge=0)
    extra_computer_per_full_day: int = Field(ge=0)


class PersonDayFees(PolicyModel):
    per_person_day: int = Field(ge=0)


class RetentionFees(PolicyModel):
    per_half_year: int = Field(ge=0)


class FeeSchedule(PolicyModel):
    """The validated fee schedule."""

    currency: str = "TWD"
    data_processing: DataProcessingFees
    onsite: OnsiteFees
    analysis_on_behalf: PersonDayFees
    retention: RetentionFees
    government_official_rate: Decimal = Field(ge=0, le=1)


def fee_schedule(settings: Settings | None = None) -> FeeSchedule:
    """Load ``policies/fee_schedule.yaml``."""
    return load_policy("fee_schedule", FeeSchedule, settings)


@dataclass(frozen=True)
class FeeLine:
    """One itemised line: ``amount == quantity * unit_price`` unless a minimum applied."""

    kind: str
    description: str
    quantity: int
    unit_price: int
    amount: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def total(lines: Iterable[FeeLine]) -> int:
    """Sum of the line amounts."""
    return sum(line.amount for line in lines)


def data_processing_line(
    schedule: FeeSchedule, *, file: str, year: int, columns: int, kind: str = "data_processing",
    note: str = "",
) -> FeeLine:
    """250 per column for one file-year, at least the per-file-year minimum."""
    if columns < 1:
        raise InputError(f"{file} {year}: a file-year needs at least one column to be billed")
    rate = schedule.data_processing.per_column_per_file_per_year
    minimum = schedule.data_processing.minimum_per_file_year
    amount = max(columns * rate, minimum)
    desc = f"{file} {year}: {columns} columns x {rate}"
    if amount > columns * rate:
        desc += f" (minimum {minimum} per file-year)"
    if note:
        desc += f" {note}"
    # The minimum is billed as one unit at the minimum price so quantity*unit_price == amount.
    if amount == columns * rate:
        return FeeLine(kind, desc, columns, rate, amount)
    return FeeLine(kind, desc, 1, amount, amount)


def data_processing_lines(
    schedule: FeeSchedule, file_years: Iterable[tuple[str, int]], columns: Mapping[str, int],
    *, kind: str = "data_processing", note: str = "",
) -> list[FeeLine]:
    """Lines for each (file, year), with ``columns[file]`` approved columns."""
    return [
        data_processing_line(schedule, file=f, year=y, columns=columns[f], kind=kind, note=note)
        for f, y in sorted(file_years)
    ]


def working_day_lines(
    schedule: FeeSchedule, *, half_days: int, full_days: int, computers: int = 1,
) -> list[FeeLine]:
    """On-site working days, and the same slots again for every computer beyond the first."""
    if half_days < 0 or full_days < 0:
        raise InputError("working days cannot be negative")
    if computers < 1:
        raise InputError("a project has at least one computer")
    fees = schedule.onsite
    lines: list[FeeLine] = []
    if half_days:
        lines.append(FeeLine("half_day", f"on-site half days x {fees.half_day}", half_days,
                             fees.half_day, half_days * fees.half_day))
    if full_days:
        lines.append(FeeLine("full_day", f"on-site full days x {fees.full_day}", full_days,
                             fees.full_day, full_days * fees.full_day))
    extra = computers - 1
    if extra and half_days:
        q = extra * half_days
        lines.append(FeeLine("extra_computer",
                             f"{extra} extra computer(s) x {half_days} half days",
                             q, fees.extra_computer_per_half_day,
                             q * fees.extra_computer_per_half_day))
    if extra and full_days:
        q = extra * full_days
        lines.append(FeeLine("extra_computer",
                             f"{extra} extra computer(s) x {full_days} full days",
                             q, fees.extra_computer_per_full_day,
                             q * fees.extra_computer_per_full_day))
    return lines


def column_change_lines(
    schedule: FeeSchedule, *, nth_change: int, file_years: Sequence[tuple[str, int]],
    added: Mapping[str, int], total_after: Mapping[str, int],
) -> list[FeeLine]:
    """The column-change rule (seed 003 §10(二)2).

    The first column change is billed by the number of added columns; from the second on by
    the total number of columns of the file after the change. Either way per data year of the
    file, with the per-file-year minimum.
    """
    basis = added if nth_change == 1 else total_after
    note = ("(change 1: added columns)" if nth_change == 1
            else f"(change {nth_change}: all columns after the change)")
    return [
        data_processing_line(schedule, file=f, year=y, columns=basis[f],
                             kind="change_columns", note=note)
        for f, y in sorted(file_years) if added.get(f)
    ]


def retention_line(schedule: FeeSchedule, *, months: int) -> FeeLine:
    """Data retention for an extension: per started half year."""
    if months < 1:
        raise InputError("an extension lasts at least one month")
    halves = ceil(months / 6)
    rate = schedule.retention.per_half_year
    return FeeLine("retention", f"data retention {months} months = {halves} half year(s)",
                   halves, rate, halves * rate)


def analysis_on_behalf_line(
    schedule: FeeSchedule, *, person_days: Fraction | float | str
) -> FeeLine:
    """Analysis by staff on the applicant's behalf; part days count as one whole day."""
    days = Fraction(str(person_days))
    if days <= 0:
        raise InputError("person-days must be positive")
    whole = ceil(days)
    rate = schedule.analysis_on_behalf.per_person_day
    return FeeLine("analysis_on_behalf", f"analysis on behalf: {days} person-days -> {whole}",
                   whole, rate, whole * rate)


def waiver_line(
    schedule: FeeSchedule, lines: Sequence[FeeLine], project_type: str
) -> FeeLine | None:
    """The government reduction for official duties: a negative line, or None.

    The amount still charged is ``round_half_up(subtotal * rate)``; the waiver line is the
    difference, so the notice's total stays an exact integer.
    """
    if project_type != "official":
        return None
    subtotal = total(lines)
    rate = Fraction(schedule.government_official_rate)
    charged = int((Fraction(subtotal) * rate) + Fraction(1, 2)) if subtotal else 0
    reduction = subtotal - charged
    if reduction == 0:
        return None
    return FeeLine("government_waiver",
                   f"government agency, official duties: rate {rate} of {subtotal}",
                   1, -reduction, -reduction)
