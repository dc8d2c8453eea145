"""Steward review: the working-day calendar and clock, the queue order, decisions."""

from __future__ import annotations

from datetime import date

import pytest

from enclave.calendar import add_working_days, load_calendar, working_days_between
from enclave.errors import InputError, PermissionDenied, SeparationOfDutiesError
from enclave.projects import review, service
from enclave.state.db import session_scope

from .conftest import NTU, World, set_day


def test_calendar_across_lunar_new_year(settings) -> None:
    cal = load_calendar(settings)
    # Fri 2026-02-13; Mon 16 .. Fri 20 Feb 2026 are Lunar New Year holidays (calendar.yaml)
    assert cal.is_working_day(date(2026, 2, 13))
    assert not cal.is_working_day(date(2026, 2, 16))
    assert not cal.is_working_day(date(2026, 2, 21))  # Saturday
    assert add_working_days(date(2026, 2, 13), 1, settings) == date(2026, 2, 23)
    assert working_days_between(date(2026, 2, 13), date(2026, 2, 23), settings) == 1
    assert working_days_between(date(2026, 2, 23), date(2026, 2, 13), settings) == -1
    assert cal.add_working_days(date(2026, 2, 23), -1) == date(2026, 2, 13)


def test_review_clock_across_a_holiday(world: World) -> None:
    set_day(date(2026, 2, 11))  # Wednesday before Lunar New Year
    code = world.apply()
    with session_scope(world.settings) as s:
        project = service.get_project(s, code)
        # 20 working days from Wed 11 Feb: 12-13 Feb (2), 23-26 Feb (6), 2-6 Mar (11),
        # 9-13 Mar (16), 16-19 Mar (20) -> due Thu 19 Mar.
        # (16-20 Feb New Year and Fri 27 Feb Peace Memorial Day are not counted.)
        clk = review.review_clock(project, world.settings, on=date(2026, 2, 23))
        assert clk.elapsed_working_days == 3  # 12, 13, 23 Feb
        assert clk.due_on == date(2026, 3, 19)
        assert not clk.overdue and clk.remaining_working_days == 17
        late = review.review_clock(project, world.settings, on=date(2026, 3, 20))
        assert late.overdue and late.elapsed_working_days == 21
    set_day(date(2026, 3, 20))
    with session_scope(world.settings) as s:
        doc = service.summary(s, world.settings, service.get_project(s, code))
        assert doc["review"]["overdue"] is True and doc["review"]["due_on"] == date(2026, 3, 19)


def test_queue_order_by_priority_then_age(world: World) -> None:
    independent = world.apply()  # Mon 2 Mar
    set_day(date(2026, 3, 3))
    agency = world.apply(world.spec(project_type="agency_commissioned"))
    set_day(date(2026, 3, 4))
    official_spec = world.spec(applicant="huang.yu", project_type="official",
                               institution="Ministry of Health and Welfare", personnel=[])
    official_spec.pop("irb")
    official = world.apply(official_spec)
    set_day(date(2026, 3, 5))
    lin_spec = world.spec(applicant="lin.mei", project_type="insurer_commissioned")
    lin_spec["personnel"] = [{"username": "chen.wei", "role": "co_pi", "unit": NTU}]
    insurer = world.apply(lin_spec)
    with session_scope(world.settings) as s:
        order = [i.project.code for i in review.review_queue(s, world.settings)]
    # official and insurer-commissioned first (older first), then agency, then independent
    assert order == [official, insurer, agency, independent]


def test_approve_with_refusals_per_column_and_file_year(world: World) -> None:
    code = world.apply()
    number = world.approve(
        code,
        refused_columns={("H_NHI_OPDTE", "ICD9CM_3"): "comorbidity not in the aims",
                         ("H_NHI_OPDTE", "HOSP_ID"): "institution clustering not needed"},
        refused_file_years={("H_NHI_ENROL", 2023): "enrollment of 2022 suffices"},
    )
    with session_scope(world.settings) as s:
        project = service.get_project(s, code)
        decisions = {(c.file, c.column): (c.decision, c.decision_reason) for c in project.columns}
        assert decisions[("H_NHI_OPDTE", "ICD9CM_3")] == ("refused", "comorbidity not in the aims")
        assert decisions[("H_NHI_OPDTE", "ID")] == ("approved", "necessary for the purpose")
        years = {(f.file, f.year): f.decision for f in project.file_years}
        assert years[("H_NHI_ENROL", 2023)] == "refused" and years[("H_NHI_ENROL", 2022)] == "approved"
        notice = service.application_notice(s, project)
        assert notice is not None and notice.number == number
        # OPDTE 12 cols x 250 = 3,000 (x2 years); OPDTO 10 cols = 2,500 -> min 3,000 (x2);
        # ENROL 3 cols = 750 -> min 3,000 (2022 only); 4 half days x 800 = 3,200;
        # 10 full days x 1,600 = 16,000.  3000*2 + 3000*2 + 3000 + 3200 + 16000 = 34,200
        assert notice.total == 34_200


def test_approve_refusal_checks(world: World) -> None:
    code = world.apply()
    with session_scope(world.settings) as s, pytest.raises(InputError, match="did not request"):
        service.approve(s, world.settings, actor="steve", code=code, reason="ok",
                        refused_columns={("H_NHI_OPDTE", "T_DOT"): "no"})
    with session_scope(world.settings) as s, pytest.raises(InputError, match="give a reason"):
        service.approve(s, world.settings, actor="steve", code=code, reason="ok",
                        refused_columns={("H_NHI_OPDTE", "ID"): " "})
    every = {("H_NHI_ENROL", c): "not needed" for c in ("ID", "PREM_YM", "ID1_CITY")}
    with session_scope(world.settings) as s, pytest.raises(InputError, match="refuse those years"):
        service.approve(s, world.settings, actor="steve", code=code, reason="ok",
                        refused_columns=every)
    with session_scope(world.settings) as s, pytest.raises(PermissionDenied, match="not a steward"):
        service.approve(s, world.settings, actor="rita", code=code, reason="ok")
    assert world.status(code) == "submitted"


def test_steward_on_the_project_may_not_decide(world: World) -> None:
    spec = world.spec()
    # a steward account that is also a project member (unusual, but the rule must hold)
    with session_scope(world.settings) as s:
        from enclave.users import grant_role

        grant_role(s, world.settings, actor="alice", username="lin.mei", role="steward")
    code = world.apply(spec)
    with session_scope(world.settings) as s, pytest.raises(SeparationOfDutiesError,
                                                             match=r"lin\.mei is a member"):
        service.approve(s, world.settings, actor="lin.mei", code=code, reason="ok")


def test_clarify_respond_reject(world: World) -> None:
    code = world.apply()
    with session_scope(world.settings) as s:
        service.clarify(s, world.settings, actor="steve", code=code,
                        questions="why both ICD9CM_2 and ICD9CM_3?")
    assert world.status(code) == "clarification"
    with session_scope(world.settings) as s, pytest.raises(PermissionDenied, match="not the applicant"):
        service.respond(s, world.settings, actor="lin.mei", code=code, answer="x")
    with session_scope(world.settings) as s:
        service.respond(s, world.settings, actor="chen.wei", code=code,
                        answer="E11 is frequently coded third")
        service.reject(s, world.settings, actor="sara", code=code, reason="purpose too broad")
    with session_scope(world.settings) as s:
        project = service.get_project(s, code)
        assert project.status == "rejected" and project.decided_by == "sara"
        assert all(c.decision == "refused" for c in project.columns)
