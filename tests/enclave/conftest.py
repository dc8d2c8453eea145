"""Factories for project and billing tests: people, documents and applications driven through
the real service API to the state a test needs (no rows written by hand)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from argon2 import PasswordHasher

from enclave import clock, users
from enclave.config import Settings
from enclave.projects import service
from enclave.projects.spec import parse_spec
from enclave.state.db import session_scope
from enclave.users import add_user

EXAMPLE_SPEC = Path(__file__).resolve().parents[2] / "docs" / "examples" / "project_spec.yaml"
NTU = "National Taiwan University, Institute of Epidemiology and Preventive Medicine"
PASSWORD = "a-long-enough-password"
# A Monday with no holiday nearby; every test starts here unless it moves the clock.
START = datetime(2026, 3, 2, 9, 0, tzinfo=clock.LOCAL_ZONE)

PEOPLE = [
    ("chen.wei", "Chen Wei-Ting", NTU, ["researcher"]),
    ("lin.mei", "Lin Mei-Hua", NTU, ["researcher"]),
    ("wang.hao", "Wang Hao", "Taipei Medical University, School of Public Health", ["researcher"]),
    ("huang.yu", "Huang Yu", "Ministry of Health and Welfare", ["researcher"]),
    ("steve", "Steve Su", "NHIA", ["steward"]),
    ("sara", "Sara Tsai", "NHIA", ["steward"]),
    ("rita", "Rita Kao", "NHIA", ["reviewer"]),
    ("audrey", "Audrey Ho", "NHIA", ["auditor"]),
]


def set_day(day: date, hour: int = 10) -> None:
    """Pin the clock to ``day`` at ``hour`` in Taipei."""
    clock.set_clock(datetime(day.year, day.month, day.day, hour, tzinfo=clock.LOCAL_ZONE))


@dataclass
class World:
    """An initialised home with people and helpers that go through the service API."""

    settings: Settings
    docs: Path

    def spec(self, **overrides: Any) -> dict[str, Any]:
        """The example spec as a dict, with top-level keys replaced."""
        data = yaml.safe_load(EXAMPLE_SPEC.read_text(encoding="utf-8"))
        data = copy.deepcopy(data)
        data.update(overrides)
        return data

    def apply(self, spec: dict[str, Any] | None = None, *, actor: str | None = None) -> str:
        form = parse_spec(spec or self.spec())
        with session_scope(self.settings) as s:
            project = service.apply(s, self.settings, actor=actor or form.applicant, spec=form,
                                    spec_dir=EXAMPLE_SPEC.parent)
            return project.code

    def approve(self, code: str, **kwargs: Any) -> str:
        with session_scope(self.settings) as s:
            notice = service.approve(s, self.settings, actor="steve", code=code,
                                     reason=kwargs.pop("reason", "necessary for the purpose"),
                                     **kwargs)
            return notice.number

    def sign_all(self, code: str) -> None:
        with session_scope(self.settings) as s:
            for name in sorted(service.member_names(service.get_project(s, code))):
                for kind in ("contract", "confidentiality"):
                    service.record_declaration(s, self.settings, actor="alice", code=code,
                                               username=name, kind=kind)

    def pay(self, number: str, on: date | None = None) -> None:
        with session_scope(self.settings) as s:
            service.record_payment(s, self.settings, actor="alice", notice_number=number,
                                   paid_on=on or service.today(), reference=f"R-{number}")

    def activate(self, spec: dict[str, Any] | None = None) -> str:
        """Apply, approve, sign and pay: an active project."""
        code = self.apply(spec)
        number = self.approve(code)
        self.sign_all(code)
        self.pay(number)
        return code

    def status(self, code: str) -> str:
        with session_scope(self.settings) as s:
            return service.get_project(s, code).status

    def jobs(self) -> dict[str, list]:
        with session_scope(self.settings) as s:
            return service.run_due_jobs(s, self.settings).as_dict()


@pytest.fixture
def world(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    # Cheap password hashing: these tests are about projects, not passwords (8 accounts each).
    monkeypatch.setattr(users, "_HASHER", PasswordHasher(time_cost=1, memory_cost=8,
                                                         parallelism=1))
    clock.set_clock(START)
    with session_scope(settings) as s:
        for username, full_name, unit, roles in PEOPLE:
            add_user(s, settings, actor="alice", username=username, full_name=full_name,
                     unit=unit, roles=roles, password=PASSWORD)
    docs = tmp_path / "docs"
    docs.mkdir()
    return World(settings, docs)
