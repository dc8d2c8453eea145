"""Fee computation by hand (DESIGN §7), fee notices of several specs, the ledger API,
the monthly report and the CSV ledger."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pytest

from enclave.billing import fees, ledger, notices
from enclave.billing.report import monthly_report
from enclave.errors import InputError, NotFound
from enclave.projects import service
from enclave.state.db import session_scope

from .conftest import World, set_day


@pytest.fixture
def schedule(settings) -> fees.FeeSchedule:
    return fees.fee_schedule(settings)


def test_data_processing_minimum_per_file_year(schedule) -> None:
    # 13 columns x 250 = 3,250 (above the minimum)
    assert fees.data_processing_line(schedule, file="F", year=2022, columns=13).amount == 3250
    # 12 x 250 = 3,000 exactly the minimum; 11 x 250 = 2,750 -> 3,000
    assert fees.data_processing_line(schedule, file="F", year=2022, columns=12).amount == 3000
    line = fees.data_processing_line(schedule, file="F", year=2022, columns=11)
    assert (line.quantity, line.unit_price, line.amount) == (1, 3000, 3000)
    assert "minimum 3000 per file-year" in line.description
    with pytest.raises(InputError, match="at least one column"):
        fees.data_processing_line(schedule, file="F", year=2022, columns=0)


def test_working_days_and_extra_computers(schedule) -> None:
    lines = fees.working_day_lines(schedule, half_days=3, full_days=2, computers=3)
    # 3 x 800 + 2 x 1,600 = 5,600; 2 extra computers: (2x3) x 800 + (2x2) x 1,600 = 11,200
    assert fees.total(lines) == 5600 + 11200
    assert [line.kind for line in lines] == ["half_day", "full_day", "extra_computer",
                                             "extra_computer"]


def test_column_change_rule(schedule) -> None:
    years = [("H_NHI_OPDTE", 2022), ("H_NHI_OPDTE", 2023)]
    # first change: billed by the 14 added columns: 14 x 250 = 3,500 per year -> 7,000
    first = fees.column_change_lines(schedule, nth_change=1, file_years=years,
                                     added={"H_NHI_OPDTE": 14}, total_after={"H_NHI_OPDTE": 28})
    assert fees.total(first) == 7000
    # second change: 2 added but billed by all 20 columns after it: 20 x 250 = 5,000 -> 10,000
    second = fees.column_change_lines(schedule, nth_change=2, file_years=years,
                                      added={"H_NHI_OPDTE": 2}, total_after={"H_NHI_OPDTE": 20})
    assert fees.total(second) == 10000
    # the per-file-year minimum still applies to a small first change: 2 x 250 -> 3,000 x 2
    small = fees.column_change_lines(schedule, nth_change=1, file_years=years,
                                     added={"H_NHI_OPDTE": 2}, total_after={"H_NHI_OPDTE": 16})
    assert fees.total(small) == 6000


def test_retention_analysis_and_waiver(schedule) -> None:
    assert fees.retention_line(schedule, months=6).amount == 2500
    assert fees.retention_line(schedule, months=7).amount == 5000  # two started half years
    assert fees.retention_line(schedule, months=12).amount == 5000
    # 1.5 person-days: part days count as one -> 2 x 15,000
    assert fees.analysis_on_behalf_line(schedule, person_days="1.5").amount == 30000
    assert fees.analysis_on_behalf_line(schedule, person_days=1).amount == 15000
    lines = [fees.FeeLine("data_processing", "x", 1, 3001, 3001)]
    assert fees.waiver_line(schedule, lines, "independent") is None
    full = fees.waiver_line(schedule, lines, "official")  # rate 0.0 in the policy: all waived
    assert full is not None and full.amount == -3001
    half = schedule.model_copy(update={"government_official_rate": Decimal("0.5")})
    # 3,001 x 0.5 = 1,500.5 -> 1,501 charged (half up), waiver -1,500
    assert fees.waiver_line(half, lines, "official").amount == -1500


def test_fee_notice_of_the_example_spec(world: World) -> None:
    code = world.apply()
    number = world.approve(code)
    with session_scope(world.settings) as s:
        notice = notices.get(s, number)
        # H_NHI_OPDTE 14 columns x 250 = 3,500 per year           x 2 years =  7,000
        # H_NHI_OPDTO 10 columns x 250 = 2,500 -> minimum 3,000    x 2 years =  6,000
        # H_NHI_ENROL  3 columns x 250 =   750 -> minimum 3,000    x 2 years =  6,000
        # 4 half days x 800 = 3,200; 10 full days x 1,600 = 16,000         = 19,200
        assert notice.total == 38_200
        assert notice.issued_on == date(2026, 3, 2) and notice.due_on == date(2026, 3, 16)
        assert sum(e.amount for e in ledger.entries(s, project=code)) == 38_200


def test_fee_notice_with_extra_computer(world: World) -> None:
    code = world.apply(world.spec(computers=2, working_days={"half_days": 0, "full_days": 5}))
    number = world.approve(code)
    with session_scope(world.settings) as s:
        # data 19,000 as above; 5 full days x 1,600 = 8,000; 1 extra computer x 5 x 1,600 = 8,000
        assert notices.get(s, number).total == 19_000 + 8_000 + 8_000


def test_fee_notice_government_waiver(world: World) -> None:
    spec = world.spec(applicant="huang.yu", project_type="official",
                      institution="Ministry of Health and Welfare", personnel=[])
    spec.pop("irb")
    code = world.apply(spec)
    number = world.approve(code)
    with session_scope(world.settings) as s:
        notice = notices.get(s, number)
        # 38,200 before the waiver; official duties at rate 0 -> nothing to pay
        items = notices.lines_of(notice)
        assert fees.total(items[:-1]) == 38_200 and items[-1].amount == -38_200
        assert notice.total == 0 and notice.status == "waived"
    world.sign_all(code)
    assert world.status(code) == "active"  # nothing to pay: signing completes it


def test_ledger_api_refusals(world: World) -> None:
    code = world.apply()
    with session_scope(world.settings) as s:
        common = dict(project_id=code, occurred_on=date(2026, 3, 2), actor="system")
        with pytest.raises(InputError, match="unknown charge kind 'coffee'"):
            ledger.post_charge(s, world.settings, kind="coffee", quantity=1, unit_price=1,
                               reference="x", **common)
        with pytest.raises(InputError, match="positive integer"):
            ledger.post_charge(s, world.settings, kind="half_day", quantity=0, unit_price=800,
                               reference="x", **common)
        with pytest.raises(InputError, match="negative"):
            ledger.post_charge(s, world.settings, kind="half_day", quantity=1, unit_price=-800,
                               reference="x", **common)
        with pytest.raises(InputError, match="give a reference"):
            ledger.post_charge(s, world.settings, kind="half_day", quantity=1, unit_price=800,
                               reference=" ", **common)
        with pytest.raises(NotFound, match="no project 'P1999-0001'"):
            ledger.post_charge(s, world.settings, kind="half_day", quantity=1, unit_price=800,
                               reference="x", **{**common, "project_id": "P1999-0001"})
        with pytest.raises(InputError, match="billed through a fee notice"):
            ledger.post_at_schedule(s, world.settings, project_id=code, kind="retention",
                                    quantity=1, occurred_on=date(2026, 3, 2), reference="x",
                                    actor="system")


def test_monthly_report_and_csv(world: World) -> None:
    code = world.activate()  # notice 38,200 in March 2026
    set_day(date(2026, 4, 7))
    with session_scope(world.settings) as s:
        for kind, qty, ref in [("half_day", 2, "B-1"), ("full_day", 1, "B-2"),
                               ("overnight_run", 3, "RUN-7"), ("extra_computer", 2, "B-1"),
                               ("analysis_on_behalf", "0.5", "JOB-1")]:
            ledger.post_at_schedule(s, world.settings, project_id=code, kind=kind, quantity=qty,
                                    occurred_on=date(2026, 4, 7), reference=ref, actor="system")
    with session_scope(world.settings) as s:
        march = monthly_report(s, "2026-03")
        assert march.total == 38_200 and march.by_project == {code: 38_200}
        assert march.by_kind["data_processing"] == 19_000 and march.by_kind["full_day"] == 16_000
        assert march.notices_issued == 1 and march.notices_paid == 1
        april = monthly_report(s, "2026-04")
        # 2 x 800 + 1 x 1,600 + 3 x 1,600 + 2 x 800 + 1 x 15,000 (half a day counts as one)
        assert april.total == 1600 + 1600 + 4800 + 1600 + 15000
        assert april.by_kind["overnight_run"] == 4800
        assert april.by_kind["analysis_on_behalf"] == 15000
        rows = list(csv.DictReader(io.StringIO(ledger.to_csv(ledger.entries(s)))))
        assert len(rows) == len(ledger.entries(s)) and rows[0]["project"] == code
        assert sum(int(r["amount"]) for r in rows) == 38_200 + april.total
    with pytest.raises(InputError, match="not YYYY-MM"):
        monthly_report(None, "2026/04")  # type: ignore[arg-type]


def test_first_use_is_recorded_for_active_only(world: World) -> None:
    code = world.apply()
    with session_scope(world.settings) as s, pytest.raises(InputError, match="only an active"):
        service.record_first_use(s, world.settings, actor="alice", code=code)
