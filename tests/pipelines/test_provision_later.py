"""Provisioning, continued: later opt-outs (policy switch, counts, stable index), the
representativeness report and its threshold, refusals by status, master-key rotation."""

from __future__ import annotations

import importlib.util
import json
import shutil
from itertools import pairwise
from pathlib import Path

import polars as pl
import pytest
import yaml

from enclave.config import Settings, load_settings
from enclave.keys import KeyStore, project_key
from enclave.optout import import_list
from enclave.state.db import session_scope
from enclave.state.models import AuditEntry

_spec = importlib.util.spec_from_file_location("_prov", Path(__file__).with_name("test_provision.py"))
_prov = importlib.util.module_from_spec(_spec)  # shared fixtures and independent helpers
_spec.loader.exec_module(_prov)
base, home = _prov.base, _prov.home
START = _prov.START


def _new_optout(settings: Settings, tmp_path: Path, national_id: str) -> None:
    path = tmp_path / "optout_late.csv"
    path.write_text(f"ID,EFFECTIVE_DATE,CHANNEL,ACTION\n{national_id},{START:%Y%m%d},web,optout\n")
    with session_scope(settings) as s:
        assert import_list(s, settings, path, actor="alice").imported == 1


def test_later_optouts_are_removed_from_active_extracts(
    base: tuple[Path, dict], home: tuple[Settings, dict], tmp_path: Path
) -> None:
    from pipelines.provision.later_optouts import apply_later_optouts

    root, _ = base
    settings, codes = home
    for code in codes.values():
        _prov._provision(settings, code)
    opted = list(_prov._opted_out_ids(root, START.date()))
    visits = _prov._source(root, "H_NHI_OPDTE").filter(~pl.col("ID").is_in(opted))
    person = visits.group_by("ID").len().sort("len", "ID", descending=True)["ID"][0]
    n_visits = visits.filter(pl.col("ID") == person).height
    code = codes["a"]
    index_before = pl.read_parquet(settings.projects_dir / code / "extract" / "person_index.parquet")
    pseudonym = _prov._stage2(settings, code, "person", _prov._stage1(settings, person))
    assert pseudonym in set(index_before["pseudonym"])
    # Unchanged registry: nothing to do.
    with session_scope(settings) as s:
        result = apply_later_optouts(s, settings, actor="alice")
    assert all(p["removed_rows"] == 0 for p in result.projects)
    _new_optout(settings, tmp_path, person)
    with session_scope(settings) as s:
        result = apply_later_optouts(s, settings, actor="alice")
    by_code = {p["project"]: p for p in result.projects}
    assert set(by_code) == set(codes.values())
    assert by_code[code]["per_file"]["H_NHI_OPDTE"]["removed_rows"] == n_visits
    assert by_code[code]["per_file"]["H_NHI_ENROL"]["removed_people"] == 1
    assert by_code[code]["per_file"]["H_NHI_OPDTO"]["removed_rows"] > 0
    for file in ("H_NHI_OPDTE", "H_NHI_ENROL"):
        assert pseudonym not in set(_prov._read(settings, code, file)["ID"])
    index_after = pl.read_parquet(settings.projects_dir / code / "extract" / "person_index.parquet")
    assert pseudonym not in set(index_after["pseudonym"])
    # Everyone else keeps their integer index (differencing history stays valid).
    kept = index_before.filter(pl.col("pseudonym") != pseudonym).sort("pseudonym")
    assert kept.equals(index_after.sort("pseudonym"))
    with session_scope(settings) as s:
        entry = s.query(AuditEntry).filter(AuditEntry.action == "optout.apply").order_by(AuditEntry.seq.desc()).first()
        details = json.loads(entry.details)
    assert details["enabled"] is True and len(details["projects"]) == 2
    assert person not in entry.details


def test_later_optouts_follow_the_policy_switch(
    base: tuple[Path, dict], home: tuple[Settings, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.provision.later_optouts import apply_later_optouts

    root, _ = base
    settings, codes = home
    code = codes["a"]
    _prov._provision(settings, code)
    policies = tmp_path / "policies"
    shutil.copytree(settings.policies_dir, policies)
    data = yaml.safe_load((policies / "optout.yaml").read_text())
    data["apply_to_active_extracts"] = False
    (policies / "optout.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("ENCLAVE_POLICIES_DIR", str(policies))
    switched = load_settings(settings.home)
    person = _prov._source(root, "H_NHI_ENROL").filter(
        ~pl.col("ID").is_in(list(_prov._opted_out_ids(root, START.date()))))["ID"][0]
    _new_optout(switched, tmp_path, person)
    before = (settings.projects_dir / code / "extract" / "manifest.json").read_bytes()
    with session_scope(switched) as s:
        result = apply_later_optouts(s, switched, actor="alice")
    assert result.enabled is False and result.projects == []
    assert (settings.projects_dir / code / "extract" / "manifest.json").read_bytes() == before


def test_representativeness_report(home: tuple[Settings, dict]) -> None:
    settings, codes = home
    result = _prov._provision(settings, codes["a"])
    folder = settings.projects_dir / codes["a"] / "extract" / "representativeness"
    summary = json.loads((folder / "summary.json").read_text())
    assert set(summary["dimensions"]) == {"age_group", "sex", "region", "icd10_chapter"}
    assert summary["people_excluded"] > 0
    assert summary["people_all"] == summary["people_kept"] + summary["people_excluded"]
    for dim in summary["dimensions"]:
        assert (folder / f"{dim}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        rows = summary["dimensions"][dim]
        if dim != "icd10_chapter":  # every person is in exactly one category
            assert sum(r["n_all"] for r in rows) == summary["people_all"]
            assert sum(r["n_kept"] for r in rows) == summary["people_kept"]
    html = (folder / "report.html").read_text()
    assert "age_group.png" in html and "shift (pp)" in html
    assert len(result.warnings) == len(summary["warnings"])


def test_representativeness_chapters_match_the_source(base: tuple[Path, dict], home: tuple[Settings, dict]) -> None:
    """Visits per ICD-10 chapter, all and without the opted-out people, recomputed from the
    source files with the catalog's chapter ranges."""
    from catalog import load_catalog

    root, _ = base
    settings, codes = home
    _prov._provision(settings, codes["a"])
    folder = settings.projects_dir / codes["a"] / "extract" / "representativeness"
    got = {r["category"]: (r["n_all"], r["n_kept"])
           for r in json.loads((folder / "summary.json").read_text())["dimensions"]["icd10_chapter"]}
    visits = _prov._source(root, "H_NHI_OPDTE").with_columns(
        pl.col("ICD9CM_1").str.slice(0, 3).alias("cat"),
        pl.col("ID").is_in(list(_prov._opted_out_ids(root, START.date()))).alias("opted"))
    expected = {}
    for chapter in load_catalog().codesets["icd10cm_chapters"].chapters:
        rows = visits.filter(pl.col("cat").is_between(pl.lit(chapter.range[0]), pl.lit(chapter.range[1])))
        if rows.height:
            expected[f"{chapter.chapter:02d} {chapter.en}"] = (rows.height, rows.filter(~pl.col("opted")).height)
    assert expected and got == expected
    assert sum(n for n, _ in got.values()) == visits.height


def test_representativeness_people_match_the_source(base: tuple[Path, dict], home: tuple[Settings, dict]) -> None:
    """People by sex, region and age group, all and without the opted-out people, recomputed
    from the source files: the project's people are everyone in its approved person files
    (visits and enrollment), region comes from enrollment, age is on 31 December 2023."""
    root, _ = base
    settings, codes = home
    _prov._provision(settings, codes["a"])
    summary = json.loads((settings.projects_dir / codes["a"] / "extract" / "representativeness"
                          / "summary.json").read_text())
    opted = list(_prov._opted_out_ids(root, START.date()))
    enrol = _prov._source(root, "H_NHI_ENROL")
    rows = pl.concat([_prov._source(root, "H_NHI_OPDTE").select("ID", "ID_S", "ID_BIRTHDAY"),
                      enrol.select("ID", "ID_S", "ID_BIRTHDAY")]).unique()
    region = enrol.select("ID", "ID1_CITY").unique()
    # The synthetic sources give each person one sex, birth date and city, so "any value" is exact.
    assert rows["ID"].is_unique().all() and region["ID"].is_unique().all()
    edges = summary["thresholds"]["age_edges"]
    age = 2023 - pl.col("ID_BIRTHDAY").str.slice(0, 4).cast(pl.Int32)
    group = pl.lit(f"{edges[-1]:02d}+")
    for low, high in reversed(list(pairwise(edges))):
        group = pl.when(age < high).then(pl.lit(f"{low:02d}-{high - 1:02d}")).otherwise(group)
    people = rows.join(region, on="ID", how="left").with_columns(
        age_group=group, sex=pl.col("ID_S"), region=pl.col("ID1_CITY").fill_null("unknown"),
        opted=pl.col("ID").is_in(opted))
    assert summary["people_all"] == people.height
    assert summary["people_kept"] == people.filter(~pl.col("opted")).height
    for dim in ("age_group", "sex", "region"):
        got = {r["category"]: (r["n_all"], r["n_kept"]) for r in summary["dimensions"][dim]}
        expected = {r[dim]: (r["n_all"], r["n_kept"]) for r in people.group_by(dim).agg(
            n_all=pl.len(), n_kept=(~pl.col("opted")).sum()).to_dicts()}
        assert got == expected, dim


def test_a_vault_without_person_summaries_gives_the_same_extract(home: tuple[Settings, dict]) -> None:
    """Batches ingested before person summaries existed are read from their rows instead."""
    settings, codes = home
    extract = settings.projects_dir / codes["a"] / "extract"

    def outputs() -> tuple:
        manifest = json.loads((extract / "manifest.json").read_text())
        people = set(pl.read_parquet(extract / "person_index.parquet")["pseudonym"].to_list())
        report = json.loads((extract / "representativeness" / "summary.json").read_text())
        return ({f: (i["rows"], i["optouts_excluded_rows"], i["optouts_excluded_people"])
                 for f, i in manifest["files"].items()}, people, report["dimensions"], report["people_all"])

    _prov._provision(settings, codes["a"])
    with_summaries = outputs()
    summaries = list(settings.vault_dir.glob("batch=*/people"))
    assert summaries
    for folder in summaries:
        shutil.rmtree(folder)
    _prov._provision(settings, codes["a"])
    assert outputs() == with_summaries


def test_shift_threshold_warns() -> None:
    from pipelines.provision.policy import RepresentativenessPolicy
    from pipelines.provision.representativeness import shifts

    counts = pl.DataFrame({"dimension": ["sex", "sex"], "category": ["1", "2"],
                           "n_all": [600, 400], "n_kept": [500, 400]})
    policy = RepresentativenessPolicy(max_abs_shift_pp=2.0, max_rel_shift=0.5, min_category_people=50)
    out = shifts(counts, policy)
    row = out.filter(pl.col("category") == "2").row(0, named=True)
    assert row["share_all"] == pytest.approx(0.4) and row["share_kept"] == pytest.approx(400 / 900)
    assert row["abs_shift_pp"] == pytest.approx(100 * (400 / 900 - 0.4))
    assert out["warning"].to_list() == [True, True]  # +-4.4 pp > 2 pp
    calm = shifts(counts, RepresentativenessPolicy(max_abs_shift_pp=5, max_rel_shift=0.5))
    assert not calm["warning"].any()
    small = shifts(counts, RepresentativenessPolicy(max_abs_shift_pp=2, min_category_people=1000))
    assert not small["warning"].any()


def test_refusals_by_role_and_status(home: tuple[Settings, dict]) -> None:
    from enclave.errors import PermissionDenied
    from enclave.projects import service
    from enclave.projects.spec import parse_spec
    from pipelines.provision.errors import ProjectNotProvisionable

    settings, codes = home
    with pytest.raises(PermissionDenied):
        _prov._provision(settings, codes["a"], actor="chen.wei")
    spec = parse_spec(yaml.safe_load(_prov.EXAMPLE_SPEC.read_text(encoding="utf-8")))
    with session_scope(settings) as s:
        pending = service.apply(s, settings, actor=spec.applicant, spec=spec,
                                spec_dir=_prov.EXAMPLE_SPEC.parent).code
        assert service.get_project(s, pending).status == "submitted"
    with pytest.raises(ProjectNotProvisionable):
        _prov._provision(settings, pending)
    assert not (settings.projects_dir / pending / "extract").exists()
    assert not (settings.keys_dir / "projects" / f"{pending}.wrapped").exists()


def test_master_key_rotation_keeps_pseudonyms(home: tuple[Settings, dict]) -> None:
    settings, codes = home
    code = codes["a"]
    _prov._provision(settings, code)
    before = set(pl.read_parquet(settings.projects_dir / code / "pseudonyms.parquet")["pseudonym"])
    keys = KeyStore.for_home(settings.keys_dir)
    raw = project_key(keys, code).reveal()
    from enclave.keys import project_wrapped_keys

    blob = (settings.keys_dir / "projects" / f"{code}.wrapped").read_bytes()
    keys.rotate_master(extra_wrapped=project_wrapped_keys(keys))
    assert (settings.keys_dir / "projects" / f"{code}.wrapped").read_bytes() != blob
    assert project_key(KeyStore.for_home(settings.keys_dir), code).reveal() == raw
    _prov._provision(settings, code)
    assert set(pl.read_parquet(settings.projects_dir / code / "pseudonyms.parquet")["pseudonym"]) == before


def test_reid_cli_four_eyes(base: tuple[Path, dict], home: tuple[Settings, dict]) -> None:
    from typer.testing import CliRunner

    from enclave.cli import _register, app
    from enclave.errors import SeparationOfDutiesError
    from pipelines.provision.errors import ReidError

    root, _ = base
    settings, codes = home
    code = codes["a"]
    _prov._provision(settings, code)
    person = _prov._source(root, "H_NHI_ENROL").filter(
        ~pl.col("ID").is_in(list(_prov._opted_out_ids(root, START.date()))))["ID"][0]
    pseudonym = _prov._stage2(settings, code, "person", _prov._stage1(settings, person))
    _register()
    runner = CliRunner()
    env = {"ENCLAVE_HOME": str(settings.home), "ENCLAVE_NOW": START.isoformat()}
    filed = runner.invoke(app, ["reid", "request", code, "--pseudonym", pseudonym, "--reason",
                                "court order", "--as", "alice"], env=env)
    assert filed.exit_code == 0, filed.output
    same = runner.invoke(app, ["reid", "approve", "1", "--reason", "ok", "--as", "alice"], env=env)
    assert isinstance(same.exception, SeparationOfDutiesError)  # the requester cannot approve
    early = runner.invoke(app, ["reid", "resolve", "1", "--as", "alice"], env=env)
    assert isinstance(early.exception, ReidError)
    ok = runner.invoke(app, ["reid", "approve", "1", "--reason", "verified", "--as", "bob"], env=env)
    assert ok.exit_code == 0, ok.output
    shown = runner.invoke(app, ["reid", "resolve", "1", "--json", "--as", "alice"], env=env)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["identifiers"][0]["identifier"] == person
    listed = runner.invoke(app, ["reid", "list", "--json"], env=env)
    assert json.loads(listed.stdout)[0]["status"] == "resolved"
    assert person not in listed.stdout
    with session_scope(settings) as s:
        denied = [e.action for e in s.query(AuditEntry).filter(AuditEntry.outcome == "denied")]
    assert {"reid.approve", "reid.resolve"} <= set(denied)
