"""The monthly billing report: totals over all projects and all charge kinds.

Owns the aggregation of ledger rows for one calendar month (by ``occurred_on``): per kind,
per project, and the grand total, plus the notices issued, paid and voided that month. The
ledger is small (one row per charge), so the sums run in the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from enclave.billing.ledger import ChargeKind
from enclave.errors import InputError
from enclave.state.models import FeeNotice, LedgerEntry


def month_bounds(month: str) -> tuple[date, date]:
    """``YYYY-MM`` -> [first day, first day of the next month)."""
    try:
        year, mon = (int(x) for x in month.split("-"))
        start = date(year, mon, 1)
    except ValueError:
        raise InputError(f"month {month!r} is not YYYY-MM") from None
    end = date(year + (mon == 12), mon % 12 + 1, 1)
    return start, end


@dataclass
class MonthlyReport:
    month: str
    by_kind: dict[str, int] = field(default_factory=dict)
    by_project: dict[str, int] = field(default_factory=dict)
    total: int = 0
    entries: int = 0
    notices_issued: int = 0
    notices_paid: int = 0
    paid_amount: int = 0
    notices_void: int = 0

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def monthly_report(session: Session, month: str) -> MonthlyReport:
    """Totals of every charge kind and project for ``month``."""
    start, end = month_bounds(month)
    in_month = (LedgerEntry.occurred_on >= start, LedgerEntry.occurred_on < end)
    report = MonthlyReport(month=month, by_kind={k.value: 0 for k in ChargeKind})
    for kind, amount in session.execute(
        select(LedgerEntry.kind, func.sum(LedgerEntry.amount)).where(*in_month)
        .group_by(LedgerEntry.kind)
    ):
        report.by_kind[kind] = int(amount)
    for project, amount in session.execute(
        select(LedgerEntry.project_code, func.sum(LedgerEntry.amount)).where(*in_month)
        .group_by(LedgerEntry.project_code).order_by(LedgerEntry.project_code)
    ):
        report.by_project[project] = int(amount)
    report.total = sum(report.by_kind.values())
    report.entries = session.execute(
        select(func.count(LedgerEntry.id)).where(*in_month)).scalar_one()
    report.notices_issued = session.execute(
        select(func.count(FeeNotice.id)).where(FeeNotice.issued_on >= start,
                                               FeeNotice.issued_on < end)).scalar_one()
    paid = session.execute(
        select(func.count(FeeNotice.id), func.coalesce(func.sum(FeeNotice.total), 0))
        .where(FeeNotice.paid_on >= start, FeeNotice.paid_on < end)).one()
    report.notices_paid, report.paid_amount = int(paid[0]), int(paid[1])
    report.notices_void = session.execute(
        select(func.count(FeeNotice.id)).where(FeeNotice.status == "void",
                                               FeeNotice.due_on >= start,
                                               FeeNotice.due_on < end)).scalar_one()
    return report
