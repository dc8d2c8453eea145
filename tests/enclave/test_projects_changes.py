"""Change requests and extensions: the seed's limits, the column-change billing rule on the
first and second change, fees through notices, and extension against expiry."""

from __future__ import annotations

from datetime import date

import pytest

from enclave.billing import notices
from enclave.errors import InputError, PermissionDenied, SeparationOfDutiesError
from enclave.projects import changes, service
from enclave.projects.changes import ChangeLimitExceeded
from enclave.state.db import session_scope

from .conftest import NTU, World, set_day


def _request(world: World, code: str, kind: str, payload: dict, *, actor: str = "chen.wei"):
    with session_scope(world.settings) as s:
        return changes.request_change(s, world.settings, actor=actor, code=code, kind=kind,
                                      payload=payload, reason="the study needs it").id


def _decide(world: World, change_id: int, approve: bool = True) -> tuple[str | None, int]:
    with session_scope(world.settings) as s:
        notice = changes.decide_change(s, world.settings, actor="steve", change_id=change_id,
                                       approve=approve, reason="justified")
        return (notice.number, notice.total) if notice else (None, 0)


def _columns(world: World, code: str, file: str) -> list[str]:
    with session_scope(world.settings) as s:
        return service.approved_columns(service.get_project(s, code))[file]


def test_column_changes_billed_first_by_added_then_by_total(world: World) -> None:
    code = world.activate()
    # change 1: add 13 columns to H_NHI_OPDTE (14 approved) -> billed by the 13 added:
    # 13 x 250 = 3,250 per data year x 2 years = 6,500
    added = ["CURE_ITEM_NO1", "CURE_ITEM_NO2", "TREAT_END_DATE", "CARD_SEQ_NO", "GAVE_KIND",
             "PART_NO", "ICD_OP_CODE1", "DRUG_DAY", "MED_TYPE", "DRUG_DOT", "TREAT_DOT",
             "DIAG_DOT", "T_DOT"]
    cid = _request(world, code, "columns",
                   {"add": [{"file": "H_NHI_OPDTE", "columns": {c: "cost analysis" for c in added}}]})
    number, total = _decide(world, cid)
    assert total == 6_500
    assert len(_columns(world, code, "H_NHI_OPDTE")) == 14  # not in effect until paid
    world.pay(number)
    assert len(_columns(world, code, "H_NHI_OPDTE")) == 27
    # change 2: add 1 column -> billed by all 28 columns of the file after the change:
    # 28 x 250 = 7,000 per data year x 2 years = 14,000
    cid = _request(world, code, "columns",
                   {"add": [{"file": "H_NHI_OPDTE", "columns": {"DSVC_DOT": "pharmacy fees"}}]})
    number, total = _decide(world, cid)
    assert total == 14_000
    world.pay(number)
    # changes 3 and 4 are allowed, a 5th is not (at most 4 column changes)
    for column in ("T_APPL_DOT", "PART_DOT"):
        n, _ = _decide(world, _request(world, code, "columns",
                                       {"add": [{"file": "H_NHI_OPDTE",
                                                 "columns": {column: "cost"}}]}))
        world.pay(n)
    with pytest.raises(ChangeLimitExceeded, match="at most 4 times"):
        _request(world, code, "columns",
                 {"add": [{"file": "H_NHI_OPDTE", "columns": {"TREAT_CODE": "cost"}}]})


def test_column_change_refusals(world: World) -> None:
    code = world.activate()
    with pytest.raises(InputError, match="not an approved file"):
        _request(world, code, "columns",
                 {"add": [{"file": "H_NHI_IPDTE", "columns": {"ID": "x"}}]})
    with pytest.raises(InputError, match="requested already"):
        _request(world, code, "columns", {"add": [{"file": "H_NHI_OPDTE", "columns": {"ID": "x"}}]})
    with pytest.raises(InputError, match="column T_DOT has no reason"):
        _request(world, code, "columns", {"add": [{"file": "H_NHI_OPDTE", "columns": {"T_DOT": ""}}]})
    with pytest.raises(PermissionDenied, match="not the applicant"):
        _request(world, code, "columns", {"add": [{"file": "H_NHI_OPDTE", "columns": {"T_DOT": "x"}}]},
                 actor="lin.mei")


def test_files_and_years_added_once(world: World) -> None:
    code = world.activate()
    # a new year of an approved file (its 3 approved columns: 750 -> minimum 3,000) and a new
    # file with 2 columns for 2 years (500 -> minimum 3,000 each): 3,000 + 6,000 = 9,000
    cid = _request(world, code, "files_years", {"add": [
        {"file": "H_NHI_ENROL", "years": [2024]},
        {"file": "H_NHI_IPDTE", "years": [2022, 2023],
         "columns": {"ID": "hospitalisations", "ICD9CM_1": "admission diagnosis"}},
    ]})
    number, total = _decide(world, cid)
    assert total == 9_000
    world.pay(number)
    with session_scope(world.settings) as s:
        years = service.approved_file_years(service.get_project(s, code))
        assert ("H_NHI_ENROL", 2024) in years and ("H_NHI_IPDTE", 2023) in years
    with pytest.raises(ChangeLimitExceeded, match="at most 1 time"):
        _request(world, code, "files_years", {"add": [{"file": "H_NHI_ENROL", "years": [2021]}]})


def test_personnel_limits(world: World) -> None:
    code = world.activate()
    seven = [{"username": f"p{i}", "unit": NTU} for i in range(7)]
    with pytest.raises(ChangeLimitExceeded, match="at most 6 people; this one has 7"):
        _request(world, code, "personnel", {"add": seven})
    with pytest.raises(InputError, match="attach proof of participation"):
        _request(world, code, "personnel",
                 {"add": [{"username": "huang.yu", "unit": "Ministry of Health and Welfare"}]})
    with pytest.raises(SeparationOfDutiesError, match="administers the data"):
        _request(world, code, "personnel", {"add": [{"username": "alice", "unit": NTU}]})
    cid = _request(world, code, "personnel", {"remove": ["wang.hao"]})
    number, _ = _decide(world, cid)
    assert number is None  # personnel changes cost nothing and apply at once
    with session_scope(world.settings) as s:
        assert service.member_names(service.get_project(s, code)) == {"chen.wei", "lin.mei"}
    set_day(date(2026, 8, 31))
    with pytest.raises(ChangeLimitExceeded, match="next is possible from 2026-09-02"):
        _request(world, code, "personnel", {"remove": ["lin.mei"]})
    set_day(date(2026, 9, 2))
    _decide(world, _request(world, code, "personnel", {"remove": ["lin.mei"]}))
    with session_scope(world.settings) as s:
        assert service.member_names(service.get_project(s, code)) == {"chen.wei"}


def test_working_days_change(world: World) -> None:
    code = world.activate()
    # 2 half days x 800 + 1 full day x 1,600 = 3,200; 4 more half days
    number, total = _decide(world, _request(world, code, "working_days",
                                            {"half_days": 2, "full_days": 1}))
    assert total == 3_200
    world.pay(number)
    with session_scope(world.settings) as s:
        assert service.get_project(s, code).approved_half_days == 24 + 4


def test_extension_with_retention_fee_postpones_expiry(world: World) -> None:
    code = world.activate()  # not used: period 2026-06-02 .. 2027-06-01
    with pytest.raises(ChangeLimitExceeded, match="at most 12 months"):
        _request(world, code, "extension", {"months": 13})
    # 7 months = 2 started half years x 2,500 = 5,000
    number, total = _decide(world, _request(world, code, "extension", {"months": 7}))
    assert total == 5_000
    world.pay(number)
    with session_scope(world.settings) as s:
        assert service.get_project(s, code).period_end == date(2028, 1, 1)
    with pytest.raises(ChangeLimitExceeded, match="has 7 already"):
        _request(world, code, "extension", {"months": 6})
    set_day(date(2027, 6, 2))
    assert world.jobs()["expired"] == []
    set_day(date(2028, 1, 2))
    assert world.jobs()["expired"] == [code]


def test_unpaid_change_notice_lapses(world: World) -> None:
    code = world.activate()
    cid = _request(world, code, "working_days", {"half_days": 1, "full_days": 0})
    number, _ = _decide(world, cid)
    set_day(date(2026, 3, 17))
    report = world.jobs()
    assert report["voided_changes"] == [cid] and report["voided"] == []
    assert world.status(code) == "active"
    with session_scope(world.settings) as s:
        assert notices.get(s, number).status == "void"
        assert changes.get_change(s, cid).status == "void"
        assert service.get_project(s, code).approved_half_days == 24


def test_rejected_change_and_steward_rules(world: World) -> None:
    code = world.activate()
    cid = _request(world, code, "working_days", {"half_days": 1, "full_days": 0})
    with session_scope(world.settings) as s, pytest.raises(PermissionDenied, match="not a steward"):
        changes.decide_change(s, world.settings, actor="alice", change_id=cid, approve=True,
                              reason="x")
    assert _decide(world, cid, approve=False) == (None, 0)
    with session_scope(world.settings) as s, pytest.raises(InputError, match="is rejected"):
        changes.decide_change(s, world.settings, actor="steve", change_id=cid, approve=True,
                              reason="x")


def test_member_added_by_change_signs_before_use(world: World) -> None:
    code = world.activate()
    _decide(world, _request(world, code, "personnel",
                            {"add": [{"username": "huang.yu", "unit": NTU}]}))
    with session_scope(world.settings) as s:
        assert service.check_may_use(s, code, "chen.wei").username == "chen.wei"
        with pytest.raises(PermissionDenied, match="has not signed the contract and "
                                                   "confidentiality"):
            service.check_may_use(s, code, "huang.yu")
        with pytest.raises(PermissionDenied, match="not a member"):
            service.check_may_use(s, code, "rita")
    with session_scope(world.settings) as s:
        for kind in ("contract", "confidentiality"):
            service.record_declaration(s, world.settings, actor="alice", code=code,
                                       username="huang.yu", kind=kind)
        assert service.check_may_use(s, code, "huang.yu").username == "huang.yu"
