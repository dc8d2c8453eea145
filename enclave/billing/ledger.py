"""THE billing ledger: one API through which every charge of every project is posted.

Owns the charge kinds and the append-only ``ledger_entries`` table. Fee notices (this
package), change fees and extensions (``enclave.projects``) and usage charges from the
workspace (half days, full days, overnight runs, extra computers, posted later by the hub)
all call :func:`post_charge`; reports and the CSV ledger read :func:`entries`. A mistake is
corrected by a reversing entry (:func:`reverse`), never by editing a row.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import date
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave import audit, clock
from enclave.config import Settings
from enclave.errors import InputError, NotFound
from enclave.state.models import LedgerEntry, Project


class ChargeKind(StrEnum):
    """Every kind of charge the service centre bills (DESIGN §7)."""

    DATA_PROCESSING = "data_processing"
    HALF_DAY = "half_day"
    FULL_DAY = "full_day"
    OVERNIGHT_RUN = "overnight_run"
    EXTRA_COMPUTER = "extra_computer"
    GOVERNMENT_WAIVER = "government_waiver"
    CHANGE_COLUMNS = "change_columns"
    CHANGE_FILES_YEARS = "change_files_years"
    RETENTION = "retention"
    ANALYSIS_ON_BEHALF = "analysis_on_behalf"


# Kinds whose unit price may be negative (reductions).
_NEGATIVE_KINDS = {ChargeKind.GOVERNMENT_WAIVER}


def parse_kind(value: str | ChargeKind) -> ChargeKind:
    """Turn a name into a :class:`ChargeKind`, naming the known kinds on error."""
    try:
        return ChargeKind(value)
    except ValueError:
        raise InputError(
            f"unknown charge kind {value!r}; kinds are {', '.join(k.value for k in ChargeKind)}"
        ) from None


def post_charge(
    session: Session,
    settings: Settings,
    *,
    project_id: str,
    kind: ChargeKind | str,
    quantity: int,
    unit_price: int,
    occurred_on: date,
    reference: str,
    actor: str,
    details: dict[str, Any] | None = None,
    description: str = "",
) -> LedgerEntry:
    """Post one charge to the ledger and audit it, in the caller's transaction.

    Parameters
    ----------
    project_id
        The project code (e.g. ``P2026-0001``); it must exist.
    kind
        A :class:`ChargeKind` (or its value).
    quantity, unit_price
        Exact integers; the amount is their product (NT$). Quantity must be positive;
        only reductions (``government_waiver``) carry a negative unit price.
    occurred_on
        The date the charge belongs to (reports group by its month).
    reference
        What the charge rests on: a fee-notice number, a booking id, a run id.
    actor
        Who posts it (``system`` for automatic jobs).

    Raises
    ------
    InputError
        Non-integer or non-positive quantity, negative price on a normal charge, no reference.
    NotFound
        Unknown project.
    """
    charge = parse_kind(kind)
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
        raise InputError(f"ledger {charge.value}: quantity must be a positive integer, "
                         f"got {quantity!r}")
    if not isinstance(unit_price, int) or isinstance(unit_price, bool):
        raise InputError(f"ledger {charge.value}: unit price must be an integer NT$ amount")
    if unit_price < 0 and charge not in _NEGATIVE_KINDS:
        raise InputError(f"ledger {charge.value}: unit price {unit_price} is negative; "
                         "correct a charge with ledger.reverse()")
    if not reference.strip():
        raise InputError(f"ledger {charge.value}: give a reference (notice, booking or run id)")
    return _insert(session, settings, project_id=project_id, kind=charge.value,
                   quantity=quantity, unit_price=unit_price, occurred_on=occurred_on,
                   reference=reference, actor=actor, details=details,
                   description=description, action="billing.charge")


def _insert(
    session: Session, settings: Settings, *, project_id: str, kind: str, quantity: int,
    unit_price: int, occurred_on: date, reference: str, actor: str,
    details: dict[str, Any] | None, description: str, action: str,
) -> LedgerEntry:
    exists = session.execute(select(Project.id).where(Project.code == project_id)).first()
    if not exists:
        raise NotFound(f"no project {project_id!r} to charge")
    entry = LedgerEntry(
        project_code=project_id, kind=kind, quantity=quantity, unit_price=unit_price,
        amount=quantity * unit_price, occurred_on=occurred_on, reference=reference,
        description=description, actor=actor, posted_at=clock.now(),
        details=json.dumps(details or {}, ensure_ascii=False, sort_keys=True, default=str),
    )
    session.add(entry)
    session.flush()
    audit.record(session, settings, actor=actor, role="system" if actor == "system" else "billing",
                 action=action, obj=f"ledger:{entry.id}", project=project_id,
                 details={"kind": kind, "quantity": quantity, "unit_price": unit_price,
                          "amount": entry.amount, "reference": reference,
                          "occurred_on": occurred_on.isoformat()})
    return entry


def reverse(
    session: Session, settings: Settings, *, reference: str, occurred_on: date, actor: str,
    reason: str,
) -> list[LedgerEntry]:
    """Post reversing entries for every charge with ``reference`` (e.g. a voided notice)."""
    if not reason.strip():
        raise InputError("give a reason for the reversal")
    rows = session.execute(
        select(LedgerEntry).where(LedgerEntry.reference == reference).order_by(LedgerEntry.id)
    ).scalars().all()
    out = []
    for row in rows:
        out.append(_insert(
            session, settings, project_id=row.project_code, kind=row.kind,
            quantity=row.quantity, unit_price=-row.unit_price, occurred_on=occurred_on,
            reference=f"{reference}/reversal", actor=actor,
            details={"reverses": row.id, "reason": reason},
            description=f"reversal of #{row.id}: {reason}", action="billing.reverse",
        ))
    return out


def entries(
    session: Session, *, project: str | None = None, start: date | None = None,
    end: date | None = None,
) -> Sequence[LedgerEntry]:
    """Ledger rows, oldest first, optionally for one project and dates in [start, end)."""
    stmt = select(LedgerEntry).order_by(LedgerEntry.occurred_on, LedgerEntry.id)
    if project:
        stmt = stmt.where(LedgerEntry.project_code == project)
    if start:
        stmt = stmt.where(LedgerEntry.occurred_on >= start)
    if end:
        stmt = stmt.where(LedgerEntry.occurred_on < end)
    return session.execute(stmt).scalars().all()


CSV_FIELDS = ("id", "occurred_on", "project", "kind", "quantity", "unit_price", "amount",
              "reference", "description", "actor", "posted_at")


def to_csv(rows: Sequence[LedgerEntry]) -> str:
    """The ledger as CSV text (UTF-8, one row per entry)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for r in rows:
        writer.writerow([r.id, r.occurred_on.isoformat(), r.project_code, r.kind, r.quantity,
                         r.unit_price, r.amount, r.reference, r.description, r.actor,
                         r.posted_at.isoformat()])
    return buf.getvalue()


def post_at_schedule(
    session: Session,
    settings: Settings,
    *,
    project_id: str,
    kind: ChargeKind | str,
    quantity: int | str,
    occurred_on: date,
    reference: str,
    actor: str,
) -> LedgerEntry:
    """Post a usage or service charge priced from the fee schedule.

    For ``analysis_on_behalf`` the quantity is person-days and may be fractional (part days
    count as one); the other kinds take whole units (half days, full days, overnight runs,
    extra computers per half day).
    """
    from fractions import Fraction

    from enclave.billing import fees

    schedule = fees.fee_schedule(settings)
    charge = parse_kind(kind)
    if charge is ChargeKind.ANALYSIS_ON_BEHALF:
        line = fees.analysis_on_behalf_line(schedule, person_days=Fraction(str(quantity)))
        qty, price, desc = line.quantity, line.unit_price, line.description
    else:
        prices = {
            ChargeKind.HALF_DAY: schedule.onsite.half_day,
            ChargeKind.FULL_DAY: schedule.onsite.full_day,
            ChargeKind.OVERNIGHT_RUN: schedule.onsite.overnight_run,
            ChargeKind.EXTRA_COMPUTER: schedule.onsite.extra_computer_per_half_day,
        }
        if charge not in prices:
            raise InputError(f"{charge.value} is billed through a fee notice, not directly; "
                             f"direct kinds: analysis_on_behalf, {', '.join(prices)}")
        try:
            qty = int(quantity)
        except ValueError:
            raise InputError(f"{charge.value}: quantity {quantity!r} is not a whole number") from None
        price, desc = prices[charge], f"{charge.value} x {qty}"
    return post_charge(session, settings, project_id=project_id, kind=charge, quantity=qty,
                       unit_price=price, occurred_on=occurred_on, reference=reference,
                       actor=actor, description=desc)
