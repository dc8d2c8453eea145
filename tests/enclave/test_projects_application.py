"""Submission: the example spec, every refusal at the door, documents, the 3-case queue."""

from __future__ import annotations

import hashlib
from datetime import date

import pytest

from enclave.errors import InputError, PermissionDenied, SeparationOfDutiesError
from enclave.projects import service
from enclave.projects.spec import ApplicationRefused, load_spec
from enclave.state.db import session_scope

from .conftest import EXAMPLE_SPEC, NTU, World


def test_example_spec_applies(world: World) -> None:
    spec = load_spec(EXAMPLE_SPEC)
    assert {d.file for d in spec.data} == {"H_NHI_OPDTE", "H_NHI_OPDTO", "H_NHI_ENROL"}
    assert all(d.years == [2022, 2023] for d in spec.data)
    code = world.apply()
    with session_scope(world.settings) as s:
        project = service.get_project(s, code)
        assert code == "P2026-0001" and project.status == "submitted"
        assert project.review_started_on == date(2026, 3, 2)
        # 14 + 10 + 3 columns requested, each with its reason
        assert len(project.columns) == 27
        assert all(c.reason and c.decision == "pending" for c in project.columns)
        assert len(project.file_years) == 6
        roles = {m.username: m.project_role for m in project.members}
        assert roles == {"chen.wei": "pi", "lin.mei": "co_pi", "wang.hao": "processor"}
        # IRB certificate and the other-unit proof are stored with their SHA-256
        docs = {d.kind: d for d in project.documents}
        stored = world.settings.documents_dir / code / docs["irb"].file_name
        assert stored.is_file()
        assert docs["irb"].sha256 == hashlib.sha256(stored.read_bytes()).hexdigest()
        wang = next(m for m in project.members if m.username == "wang.hao")
        assert wang.proof_document_id == docs["proof"].id


def _refused(world: World, spec: dict, *, actor: str | None = None) -> str:
    with pytest.raises(ApplicationRefused) as err:
        world.apply(spec, actor=actor)
    return str(err.value)


def test_unknown_file_and_column_refused(world: World) -> None:
    spec = world.spec()
    spec["data"].append({"file": "H_NHI_XRAY", "years": [2022], "columns": {"ID": "link"}})
    spec["data"][0]["columns"]["BLOOD_TYPE"] = "stratify"
    msg = _refused(world, spec)
    assert "unknown file 'H_NHI_XRAY'" in msg
    assert "unknown column 'BLOOD_TYPE' in H_NHI_OPDTE" in msg


def test_column_without_reason_refused(world: World) -> None:
    spec = world.spec()
    spec["data"][2]["columns"]["ID1_AMT"] = None
    spec["data"][2]["columns"]["ID_S"] = "   "
    msg = _refused(world, spec)
    assert "column ID1_AMT has no reason" in msg and "column ID_S has no reason" in msg
    assert "minimum necessary" in msg


def test_dropped_column_never_provided(world: World) -> None:
    spec = world.spec()
    spec["data"][2]["columns"]["NAME"] = "to greet people"
    assert "column NAME is never provided" in _refused(world, spec)


def test_expired_irb_refused(world: World) -> None:
    spec = world.spec()
    spec["irb"]["expiry"] = "2026-03-01"  # the day before "today" (2026-03-02)
    assert "certificate 202405017RINB expired on 2026-03-01" in _refused(world, spec)


def test_applicant_not_irb_investigator_refused(world: World) -> None:
    spec = world.spec()
    spec["irb"]["principal_investigator"] = "Someone Else"
    spec["irb"]["co_principal_investigators"] = ["Lin Mei-Hua"]
    msg = _refused(world, spec)
    assert "applicant chen.wei is not the principal or co-principal investigator" in msg
    # a co-PI may apply: lin.mei is co-PI on the same certificate
    spec = world.spec(applicant="lin.mei")
    spec["personnel"] = [{"username": "chen.wei", "role": "co_pi", "unit": NTU}]
    assert world.apply(spec).startswith("P2026-")


def test_irb_required_except_official(world: World) -> None:
    spec = world.spec()
    spec.pop("irb")
    assert "needs an IRB certificate" in _refused(world, spec)
    official = world.spec(applicant="huang.yu", project_type="official",
                          institution="Ministry of Health and Welfare", personnel=[])
    official.pop("irb")
    assert world.apply(official)


def test_other_unit_needs_proof(world: World) -> None:
    spec = world.spec()
    spec["personnel"][1].pop("proof")
    msg = _refused(world, spec)
    assert "wang.hao belongs to 'Taipei Medical University, School of Public Health'" in msg
    assert "attach proof of participation" in msg


def test_missing_document_and_unknown_person(world: World) -> None:
    spec = world.spec()
    spec["irb"]["document"] = "documents/nope.pdf"
    spec["personnel"].append({"username": "ghost", "role": "processor", "unit": NTU})
    msg = _refused(world, spec)
    assert "nope.pdf does not exist" in msg
    assert "no account 'ghost'" in msg


def test_custodian_never_a_member(world: World) -> None:
    spec = world.spec()
    spec["personnel"].append({"username": "alice", "role": "processor", "unit": NTU})
    with pytest.raises(SeparationOfDutiesError, match="alice administers the data"):
        world.apply(spec)


def test_only_the_applicant_submits(world: World) -> None:
    with pytest.raises(PermissionDenied, match=r"lin\.mei may only submit their own"):
        world.apply(world.spec(), actor="lin.mei")
    with pytest.raises(PermissionDenied, match="steve is not a researcher"):
        world.apply(world.spec(), actor="steve")


def test_bad_spec_shape_names_the_field(world: World) -> None:
    with pytest.raises(InputError, match="project_type"):
        world.apply(world.spec(project_type="hobby"))


def test_fourth_application_waits_in_queue(world: World) -> None:
    codes = [world.apply() for _ in range(4)]
    assert [world.status(c) for c in codes] == ["submitted"] * 3 + ["queued"]
    with session_scope(world.settings) as s:
        assert service.get_project(s, codes[3]).review_started_on is None
    # one of the three ends (withdrawn): the queued one enters review at once
    with session_scope(world.settings) as s:
        service.withdraw(s, world.settings, actor="chen.wei", code=codes[0], reason="merged")
    assert world.status(codes[3]) == "submitted"
    # a fifth waits again; an active project still counts as an open case
    fifth = world.apply()
    assert world.status(fifth) == "queued"
    number = world.approve(codes[1])
    world.sign_all(codes[1])
    world.pay(number)
    assert world.status(codes[1]) == "active" and world.status(fifth) == "queued"
    with session_scope(world.settings) as s:
        service.reject(s, world.settings, actor="steve", code=codes[2], reason="out of scope")
    assert world.status(fifth) == "submitted"
