"""The working-day calendar of the service centre, read from ``policies/calendar.yaml``.

Owns: which dates are working days (weekdays from policy, minus public holidays, plus declared
make-up Saturdays), counting and adding working days. Review clocks (projects) and opening
hours (the hub) both ask this module, so a holiday is entered once.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import cached_property

from pydantic import Field

from enclave.config import Settings
from enclave.errors import InputError
from enclave.policies import PolicyModel, load_policy

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Slot(PolicyModel):
    start: str
    end: str


class WorkingCalendar(PolicyModel):
    """The validated calendar policy plus the working-day arithmetic over it."""

    timezone: str = "Asia/Taipei"
    working_days: list[str] = Field(default_factory=lambda: list(_WEEKDAYS[:5]))
    slots: dict[str, Slot] = Field(default_factory=dict)
    holidays: dict[date, str] = Field(default_factory=dict)
    makeup_working_days: dict[date, str] = Field(default_factory=dict)

    @cached_property
    def _weekday_numbers(self) -> frozenset[int]:
        unknown = set(self.working_days) - set(_WEEKDAYS)
        if unknown:
            raise InputError(
                f"calendar.yaml: working_days has unknown day name(s) {sorted(unknown)}; "
                f"use {', '.join(_WEEKDAYS)}"
            )
        return frozenset(_WEEKDAYS.index(d) for d in self.working_days)

    def is_working_day(self, day: date) -> bool:
        """True when the service centre is open on ``day``."""
        if day in self.makeup_working_days:
            return True
        return day.weekday() in self._weekday_numbers and day not in self.holidays

    def add_working_days(self, start: date, days: int) -> date:
        """The date ``days`` working days after ``start`` (``start`` itself not counted).

        ``add_working_days(d, 0)`` is ``d`` itself; negative counts go backwards.
        """
        step = 1 if days >= 0 else -1
        remaining = abs(days)
        current = start
        while remaining:
            current += timedelta(days=step)
            if self.is_working_day(current):
                remaining -= 1
        return current

    def working_days_between(self, start: date, end: date) -> int:
        """Working days in the half-open interval (``start``, ``end``]; negative if end < start.

        This is the number of working days that have elapsed since ``start`` by ``end``.
        """
        if end < start:
            return -self.working_days_between(end, start)
        count = 0
        current = start
        while current < end:
            current += timedelta(days=1)
            if self.is_working_day(current):
                count += 1
        return count


def load_calendar(settings: Settings | None = None) -> WorkingCalendar:
    """Load and validate ``policies/calendar.yaml``."""
    cal = load_policy("calendar", WorkingCalendar, settings)
    _ = cal._weekday_numbers  # fail at load time on a typo, not at first use
    return cal


def is_working_day(day: date, settings: Settings | None = None) -> bool:
    """True when ``day`` is a working day under the calendar policy."""
    return load_calendar(settings).is_working_day(day)


def add_working_days(start: date, days: int, settings: Settings | None = None) -> date:
    """The date ``days`` working days after ``start`` under the calendar policy."""
    return load_calendar(settings).add_working_days(start, days)


def working_days_between(start: date, end: date, settings: Settings | None = None) -> int:
    """Working days elapsed from ``start`` to ``end`` under the calendar policy."""
    return load_calendar(settings).working_days_between(start, end)
