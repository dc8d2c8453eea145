"""The steward's review queue and the review clock in working days.

Owns: how long an application has been in review (working days from the policy calendar),
its due date against the 20-working-day target, whether it is overdue, and the order in
which the queue is worked when capacity is short (official and insurer-commissioned first,
then agency-commissioned, then independent research; oldest first within a priority).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave.calendar import load_calendar
from enclave.config import Settings
from enclave.errors import PolicyError
from enclave.projects.lifecycle import IN_REVIEW, Status
from enclave.projects.policy import projects_policy
from enclave.state.models import Project


@dataclass(frozen=True)
class ReviewClock:
    """Where an application stands against the review target."""

    started_on: date
    elapsed_working_days: int
    target_working_days: int
    due_on: date
    overdue: bool

    @property
    def remaining_working_days(self) -> int:
        return self.target_working_days - self.elapsed_working_days

    def as_dict(self) -> dict[str, object]:
        return {"started_on": self.started_on, "elapsed_working_days": self.elapsed_working_days,
                "target_working_days": self.target_working_days, "due_on": self.due_on,
                "remaining_working_days": self.remaining_working_days, "overdue": self.overdue}


def review_clock(project: Project, settings: Settings, *, on: date | None = None) -> ReviewClock:
    """The review clock of ``project`` on ``on`` (default: today, from :mod:`enclave.clock`)."""
    from enclave.projects.service import today

    if project.review_started_on is None:
        raise PolicyError(f"{project.code} has not entered review yet (it is {project.status})")
    cal = load_calendar(settings)
    target = projects_policy(settings).review_target_working_days
    day = on or today()
    elapsed = cal.working_days_between(project.review_started_on, day)
    due = cal.add_working_days(project.review_started_on, target)
    return ReviewClock(project.review_started_on, elapsed, target, due, day > due)


@dataclass(frozen=True)
class QueueItem:
    project: Project
    priority: int
    clock: ReviewClock

    def as_dict(self) -> dict[str, object]:
        return {"code": self.project.code, "title": self.project.title,
                "applicant": self.project.applicant, "type": self.project.project_type,
                "status": self.project.status, "priority": self.priority,
                **self.clock.as_dict()}


def priority_of(project_type: str, settings: Settings) -> int:
    """The queue priority of a project type (lower first), from ``projects.yaml``."""
    table = projects_policy(settings).review_priority
    if project_type not in table:
        raise PolicyError(f"projects.yaml: review_priority has no entry for {project_type!r}")
    return table[project_type]


def review_queue(
    session: Session, settings: Settings, *, on: date | None = None
) -> list[QueueItem]:
    """Applications in review, in the order the steward should work them."""
    rows = session.execute(
        select(Project).where(Project.status.in_([s.value for s in IN_REVIEW]))
    ).scalars().all()
    items = [QueueItem(p, priority_of(p.project_type, settings), review_clock(p, settings, on=on))
             for p in rows]
    # Within a priority the oldest first; clarifications wait on the applicant, so they go last
    # in their priority group.
    items.sort(key=lambda i: (i.priority, i.project.status == Status.CLARIFICATION.value,
                              i.clock.started_on, i.project.submitted_at, i.project.id))
    return items
