"""The project-rules policy (``policies/projects.yaml``) and date arithmetic on months."""

from __future__ import annotations

import calendar as _cal
from datetime import UTC, date, datetime

from pydantic import Field

from enclave.clock import LOCAL_ZONE
from enclave.config import Settings
from enclave.policies import PolicyModel, load_policy


class ChangeLimits(PolicyModel):
    personnel_interval_months: int = Field(ge=0)
    personnel_max_people: int = Field(ge=1)
    files_years_max: int = Field(ge=0)
    columns_max: int = Field(ge=0)


class ProjectsPolicy(PolicyModel):
    """Limits and periods of the project rules (DESIGN §4; seed 003 §8-§12)."""

    max_concurrent_applications: int = Field(ge=1)
    review_target_working_days: int = Field(ge=1)
    review_priority: dict[str, int]
    payment_window_days: int = Field(ge=1)
    usage_period_months: int = Field(ge=1)
    start_deadline_months: int = Field(ge=0)
    irb_exempt_types: list[str] = Field(default_factory=list)
    changes: ChangeLimits
    extension_max_months: int = Field(ge=0)


def projects_policy(settings: Settings | None = None) -> ProjectsPolicy:
    """Load ``policies/projects.yaml``."""
    return load_policy("projects", ProjectsPolicy, settings)


def add_months(day: date, months: int) -> date:
    """``day`` plus ``months`` calendar months, clamped to the month's last day."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = _cal.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def local_date(moment: datetime) -> date:
    """The service centre's calendar date of a stored moment.

    SQLite hands ``DateTime(timezone=True)`` values back without their zone; the clock's
    real source is UTC, so a naive value is read as UTC.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(LOCAL_ZONE).date()
