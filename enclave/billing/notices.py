"""Fee notices (繳費通知): issuing, paying and voiding, each posted to the ledger.

Owns the notice table. A notice is issued with itemised :class:`~enclave.billing.fees.FeeLine`
lines; every line is posted to the ledger at once under the notice number. Payment is
recorded by the custodian; a notice unpaid after the payment window is voided and its ledger
lines reversed. What a payment or a void *means* for the project is decided by
:mod:`enclave.projects.service`, which calls these functions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, timedelta
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from enclave import audit
from enclave.billing import ledger
from enclave.billing.fees import FeeLine, total
from enclave.config import Settings
from enclave.errors import EnclaveError, InputError, NotFound
from enclave.state.models import FeeNotice, Project


class NoticeStatus(StrEnum):
    ISSUED = "issued"
    PAID = "paid"
    WAIVED = "waived"  # nothing to pay (total 0, e.g. fully waived official duties)
    VOID = "void"


class NoticeStateError(EnclaveError):
    """The notice is not in a state that allows this (paid twice, paid after void ...)."""

    exit_code = 3


def issue(
    session: Session, settings: Settings, *, project: Project, purpose: str,
    lines: Sequence[FeeLine], issued_on: date, window_days: int, actor: str,
    change_id: int | None = None,
) -> FeeNotice:
    """Create a notice for ``lines`` and post each line to the ledger."""
    count = session.execute(select(func.count(FeeNotice.id))).scalar_one()
    number = f"FN{issued_on.year}-{count + 1:05d}"
    amount = total(lines)
    notice = FeeNotice(
        number=number, project_id=project.id, purpose=purpose, change_id=change_id,
        issued_on=issued_on, due_on=issued_on + timedelta(days=window_days), total=amount,
        items=json.dumps([line.as_dict() for line in lines], ensure_ascii=False),
        status=(NoticeStatus.ISSUED if amount > 0 else NoticeStatus.WAIVED).value,
    )
    session.add(notice)
    session.flush()
    audit.record(session, settings, actor=actor, role="system" if actor == "system" else "steward",
                 action="billing.notice", obj=number, project=project.code,
                 details={"purpose": purpose, "total": amount, "due_on": notice.due_on,
                          "lines": len(lines)})
    for line in lines:
        ledger.post_charge(session, settings, project_id=project.code, kind=line.kind,
                           quantity=line.quantity, unit_price=line.unit_price,
                           occurred_on=issued_on, reference=number, actor=actor,
                           description=line.description, details={"purpose": purpose})
    return notice


def lines_of(notice: FeeNotice) -> list[FeeLine]:
    """The itemised lines stored on a notice."""
    return [FeeLine(**item) for item in json.loads(notice.items)]


def get(session: Session, number: str) -> FeeNotice:
    notice = session.execute(
        select(FeeNotice).where(FeeNotice.number == number)
    ).scalar_one_or_none()
    if notice is None:
        raise NotFound(f"no fee notice {number!r}")
    return notice


def for_project(session: Session, project: Project) -> list[FeeNotice]:
    return list(session.execute(
        select(FeeNotice).where(FeeNotice.project_id == project.id).order_by(FeeNotice.id)
    ).scalars())


def record_payment(
    session: Session, settings: Settings, *, notice: FeeNotice, paid_on: date, reference: str,
    actor: str, project_code: str,
) -> FeeNotice:
    """Mark a notice paid (no refunds after this; seed 003 §12(三))."""
    if notice.status != NoticeStatus.ISSUED.value:
        raise NoticeStateError(f"fee notice {notice.number} is {notice.status}; "
                               "only an issued notice can be paid")
    if not reference.strip():
        raise InputError("give the payment reference (receipt or transfer number)")
    if paid_on < notice.issued_on:
        raise InputError(f"payment date {paid_on} is before the notice date {notice.issued_on}")
    if paid_on > notice.due_on:
        raise NoticeStateError(
            f"fee notice {notice.number} was due by {notice.due_on}; a payment on {paid_on} "
            "is late and the application is void (apply again)"
        )
    notice.status = NoticeStatus.PAID.value
    notice.paid_on = paid_on
    notice.payment_reference = reference
    audit.record(session, settings, actor=actor, role="custodian", action="billing.payment",
                 obj=notice.number, project=project_code,
                 details={"total": notice.total, "paid_on": paid_on, "reference": reference})
    return notice


def void(
    session: Session, settings: Settings, *, notice: FeeNotice, on: date, actor: str,
    project_code: str,
) -> None:
    """Void an unpaid notice and reverse its ledger lines."""
    if notice.status != NoticeStatus.ISSUED.value:
        raise NoticeStateError(f"fee notice {notice.number} is {notice.status}; cannot void")
    notice.status = NoticeStatus.VOID.value
    audit.record(session, settings, actor=actor, role="system", action="billing.void",
                 obj=notice.number, project=project_code,
                 reason=f"unpaid by {notice.due_on}", details={"total": notice.total})
    ledger.reverse(session, settings, reference=notice.number, occurred_on=on, actor=actor,
                   reason=f"fee notice {notice.number} void: unpaid by {notice.due_on}")


def is_settled(notice: FeeNotice) -> bool:
    """Paid, or nothing to pay."""
    return notice.status in (NoticeStatus.PAID.value, NoticeStatus.WAIVED.value)
