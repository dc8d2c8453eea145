"""Workspace policy for the hub: quotas (``policies/quotas.yaml``), opening hours, refusals.

Owns the :class:`QuotasPolicy` model, the opening-hour arithmetic over the working-day calendar
(which half-day slot is open now, when tonight's closing is, which night an overnight run
belongs to) and :class:`SpawnRefused`, the typed refusal every start-up check raises.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator

from enclave.calendar import WorkingCalendar, load_calendar
from enclave.config import Settings
from enclave.errors import EnclaveError
from enclave.policies import PolicyModel, load_policy

# A command a PI can follow to get more days (quoted in the refusal message).
MORE_DAYS_HINT = (
    "ask the project's PI to request more working days: `enclave project change {code} "
    "working-days.yaml` with `kind: working_days`"
)


class QuotasPolicy(PolicyModel):
    """``policies/quotas.yaml``: what one project's workspace may use."""

    computers_per_project: int = Field(1, ge=1)
    memory_limit_mb: int = Field(4096, ge=64)
    cpu_limit: float = Field(1.0, gt=0)
    scratch_quota_mb: int = Field(2048, ge=1)
    idle_cull_minutes: int = Field(60, ge=1)
    max_output_cell_kb: int = Field(512, ge=1)
    tmp_mb: int = Field(256, ge=1)
    shm_mb: int = Field(64, ge=1)
    terminal_enabled: bool = False
    allowed_networks: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])

    @field_validator("allowed_networks")
    @classmethod
    def _valid_networks(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError as exc:
                raise ValueError(f"allowed_networks: {value!r} is not a CIDR network ({exc})") from None
        return values

    @model_validator(mode="after")
    def _private_space_within_scratch(self) -> QuotasPolicy:
        # /tmp (with /var/tmp) and /dev/shm are the server's private scratch space: they are
        # taken from the same budget as the project scratch, never beyond it.
        if self.tmp_mb + self.shm_mb > self.scratch_quota_mb:
            raise ValueError(
                f"tmp_mb ({self.tmp_mb}) + shm_mb ({self.shm_mb}) exceed scratch_quota_mb "
                f"({self.scratch_quota_mb}): a server's private /tmp and /dev/shm count against the scratch quota"
            )
        return self

    def client_allowed(self, address: str) -> bool:
        """True when ``address`` (an IP, maybe IPv4-mapped IPv6) is inside the allow-list."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in ipaddress.ip_network(n, strict=False) for n in self.allowed_networks)


def quotas_policy(settings: Settings | None = None) -> QuotasPolicy:
    """Load and validate ``policies/quotas.yaml``."""
    return load_policy("quotas", QuotasPolicy, settings)


class SpawnRefused(EnclaveError):
    """A policy refusal of a server start: shown to the researcher, logged, counted by reason.

    Parameters
    ----------
    user_message
        What the researcher reads on the spawn page (what happened and what to do).
    reason
        A short label for logs and metrics (``outside_hours``, ``days_used_up`` ...).
    log_message
        Extra detail for the operator's log; defaults to the user message.
    """

    exit_code = 4

    def __init__(self, user_message: str, *, reason: str, log_message: str | None = None) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.reason = reason
        self.log_message = log_message or user_message


@dataclass(frozen=True)
class OpeningHours:
    """The opening-hour slots of the calendar policy, in the service centre's zone."""

    calendar: WorkingCalendar

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.calendar.timezone)

    def _slots(self) -> list[tuple[str, time, time]]:
        out = [
            (name, time.fromisoformat(s.start), time.fromisoformat(s.end)) for name, s in self.calendar.slots.items()
        ]
        return sorted(out, key=lambda item: item[1])

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone)

    def slot_at(self, moment: datetime) -> str | None:
        """The name of the half-day slot open at ``moment`` (``am``/``pm``), else None."""
        local = self.local(moment)
        if not self.calendar.is_working_day(local.date()):
            return None
        for name, start, end in self._slots():
            if start <= local.time() < end:
                return name
        return None

    def describe(self) -> str:
        slots = ", ".join(f"{s:%H:%M}-{e:%H:%M}" for _, s, e in self._slots())
        return f"{', '.join(self.calendar.working_days)} {slots}, not on public holidays"

    def is_closed(self, moment: datetime) -> bool:
        """True after closing, before opening, and on non-working days (lunch is not closed)."""
        local = self.local(moment)
        slots = self._slots()
        if not slots or not self.calendar.is_working_day(local.date()):
            return True
        return not (slots[0][1] <= local.time() < slots[-1][2])

    def night_of(self, moment: datetime) -> date | None:
        """The night an overnight run at ``moment`` belongs to (the evening's date), or None.

        After the last slot ends the night is today's; before the first slot starts it is the
        previous calendar day's. In opening hours, or in the daytime of a non-working day,
        there is no night (a run registered for Friday night ends when Saturday's opening
        time would be).
        """
        local = self.local(moment)
        slots = self._slots()
        if not slots:
            return None
        if local.time() >= slots[-1][2]:
            return local.date() if self.calendar.is_working_day(local.date()) else None
        if local.time() < slots[0][1]:
            return local.date() - timedelta(days=1)
        return None

    def closing_at(self, day: date) -> datetime:
        """The moment the last slot of ``day`` ends."""
        return datetime.combine(day, self._slots()[-1][2], tzinfo=self.zone)


def opening_hours(settings: Settings | None = None) -> OpeningHours:
    """Opening hours from ``policies/calendar.yaml``."""
    return OpeningHours(load_calendar(settings))
