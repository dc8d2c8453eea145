"""Provisioning of project extracts on a small ingested vault: opt-out exclusion checked with
independently recomputed tokens, stage-2 pseudonyms, approved selection only, coarsening,
crash safety, later opt-outs, closure (crypto-shredding), re-identification, no key bytes in
logs or audit."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest
import yaml
from argon2 import PasswordHasher

from enclave import clock, users
from enclave.config import Settings, load_settings
from enclave.errors import EnclaveError as EnclaveErrorType
from enclave.errors import PermissionDenied as PermissionDeniedType
from enclave.home import init_home
from enclave.keys import KeyDestroyedError, KeyStore, project_key, project_key_path
from enclave.optout import import_list
from enclave.projects import service
from enclave.projects.spec import parse_spec
from enclave.state.db import session_scope
from enclave.state.models import AuditEntry
from enclave.users import add_user
from pipelines.ingest import ingest_directory
from pipelines.synth import generate_source

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_SPEC = REPO / "docs" / "examples" / "project_spec.yaml"
PASSWORD = "a-long-enough-password"
NTU = "National Taiwan University, Institute of Epidemiology and Preventive Medicine"
PEOPLE = [
    ("bob", "Bob Custodian", "NHIA", ["custodian"]),
    ("chen.wei", "Chen Wei-Ting", NTU, ["researcher"]),
    ("lin.mei", "Lin Mei-Hua", NTU, ["researcher"]),
    ("wang.hao", "Wang Hao", "Taipei Medical University, School of Public Health", ["researcher"]),
    ("steve", "Steve Su", "NHIA", ["steward"]),
]
START = datetime(2026, 3, 2, 9, 0, tzinfo=clock.LOCAL_ZONE)


def _activate(settings: Settings, *, refuse_year: bool) -> str:
    spec = parse_spec(yaml.safe_load(EXAMPLE_SPEC.read_text(encoding="utf-8")))
    with session_scope(settings) as s:
        code = service.apply(s, settings, actor=spec.applicant, spec=spec,
                             spec_dir=EXAMPLE_SPEC.parent).code
    refused_years = {("H_NHI_OPDTO", 2022): "orders of 2022 not needed"} if refuse_year else {}
    with session_scope(settings) as s:
        notice = service.approve(s, settings, actor="steve", code=code, reason="necessary",
                                 refused_columns={("H_NHI_OPDTE", "ICD9CM_3"): "not needed"},
                                 refused_file_years=refused_years)
        number = notice.number
    with session_scope(settings) as s:
        for name in sorted(service.member_names(service.get_project(s, code))):
            for kind in ("contract", "confidentiality"):
                service.record_declaration(s, settings, actor="alice", code=code, username=name,
                                           kind=kind)
    with session_scope(settings) as s:
        service.record_payment(s, settings, actor="alice", notice_number=number,
                               paid_on=service.today(), reference=f"R-{number}")
    return code


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A home with an ingested vault (2 years), opt-outs imported, two active projects."""
    root = tmp_path_factory.mktemp("prov")
    old = os.environ.pop("ENCLAVE_HOME", None)
    saved_hasher = users._HASHER
    users._HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    try:
        s = load_settings(root / "home")
        init_home(s, admin_username="alice", admin_full_name="Alice Lin", admin_unit="NHIA",
                  admin_password="correct-horse-battery-staple")
        clock.set_clock(START)
        with session_scope(s) as session:
            for username, full_name, unit, roles in PEOPLE:
                add_user(session, s, actor="alice", username=username, full_name=full_name,
                         unit=unit, roles=roles, password=PASSWORD)
        src = root / "src"
        generate_source(src, people=500, years=[2022, 2023], seed=5, optout_share=0.05,
                        files=["H_NHI_OPDTE", "H_NHI_OPDTO", "H_NHI_ENROL"])
        ingest_directory(s, src, actor="alice")
        for path in sorted((src / "optout").glob("*.csv")):
            with session_scope(s) as session:
                import_list(session, s, path, actor="alice")
        codes = {"a": _activate(s, refuse_year=True), "b": _activate(s, refuse_year=False)}
    finally:
        users._HASHER = saved_hasher
        clock.set_clock(None)
        if old is not None:
            os.environ["ENCLAVE_HOME"] = old
    return root, codes



@pytest.fixture
def home(base: tuple[Path, dict], tmp_path: Path) -> tuple[Settings, dict]:
    """A private copy of the base home for one test, with the clock at the start day."""
    root, codes = base
    shutil.copytree(root / "home", tmp_path / "home", symlinks=True)
    clock.set_clock(START)
    return load_settings(tmp_path / "home"), codes


def _provision(settings: Settings, code: str, actor: str = "alice"):
    from pipelines.provision import provision_project

    with session_scope(settings) as s:
        return provision_project(s, settings, code=code, actor=actor)


def _optout_ids(root: Path) -> set[str]:
    ids: set[str] = set()
    for path in (root / "src" / "optout").glob("*.csv"):
        frame = pl.read_csv(path, infer_schema=False)
        ids |= set(frame.filter(pl.col("ACTION") == "optout")["ID"].to_list())
    return ids



# ---------------------------------------------------------------- independent recomputation
# These helpers use only the standard library and the key files, not the provisioning code.


def _stage1(settings: Settings, national_id: str) -> bytes:
    key = KeyStore.for_home(settings.keys_dir).stage1_key().reveal()
    return hmac.digest(key, b"person\x00" + national_id.strip().upper().encode(), "sha256")[:16]


def _stage2(settings: Settings, code: str, kind: str, token: bytes) -> str:
    key = project_key(KeyStore.for_home(settings.keys_dir), code).reveal()
    digest = hmac.digest(key, kind.encode() + b"\x00" + token, "sha256")[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _opted_out_ids(root: Path, on: date) -> set[str]:
    """Who is opted out on ``on``, from the source lists (latest event wins)."""
    frames = [pl.read_csv(p, infer_schema=False) for p in sorted((root / "src" / "optout").glob("*.csv"))]
    events = pl.concat(frames).with_columns(pl.col("EFFECTIVE_DATE").str.to_date("%Y%m%d"))
    latest = (events.filter(pl.col("EFFECTIVE_DATE") <= on)
              .sort("ID", "EFFECTIVE_DATE", pl.col("ACTION") == "withdraw")
              .group_by("ID").last())
    return set(latest.filter(pl.col("ACTION") == "optout")["ID"].to_list())


def _read(settings: Settings, code: str, file: str) -> pl.DataFrame:
    folder = settings.projects_dir / code / "extract" / file
    return pl.read_parquet(sorted(folder.glob("year=*/*.parquet")), hive_partitioning=False)


def _source(root: Path, file: str) -> pl.DataFrame:
    return pl.concat([pl.read_csv(p, infer_schema=False) for p in sorted((root / "src").glob(f"{file}_*.csv"))])


# ---------------------------------------------------------------- must show


def test_no_opted_out_person_in_any_extract(base: tuple[Path, dict], home: tuple[Settings, dict]) -> None:
    root, _ = base
    settings, codes = home
    code = codes["b"]
    result = _provision(settings, code)
    ids = _opted_out_ids(root, START.date())
    assert len(ids) >= 10, "the generator produced too few opt-outs to test anything"
    banned = {_stage2(settings, code, "person", _stage1(settings, i)) for i in ids}
    opdte, enrol = _read(settings, code, "H_NHI_OPDTE"), _read(settings, code, "H_NHI_ENROL")
    assert banned.isdisjoint(opdte["ID"].to_list())
    assert banned.isdisjoint(enrol["ID"].to_list())
    extract = settings.projects_dir / code / "extract"
    assert banned.isdisjoint(pl.read_parquet(extract / "person_index.parquet")["pseudonym"].to_list())
    registry = pl.read_parquet(settings.projects_dir / code / "pseudonyms.parquet")
    assert banned.isdisjoint(registry["pseudonym"].to_list())
    # Order rows carry no person: their claims (by key) of opted-out people must be gone too.
    src_claims = _source(root, "H_NHI_OPDTE").filter(pl.col("ID").is_in(list(ids)))
    assert src_claims.height > 0
    key = ["FEE_YM", "APPL_TYPE", "HOSP_ID", "APPL_DATE", "CASE_TYPE", "SEQ_NO"]
    inst_key = project_key(KeyStore.for_home(settings.keys_dir), code).reveal()
    stage1_key = KeyStore.for_home(settings.keys_dir).stage1_key().reveal()

    def hosp(v: str) -> str:
        t = hmac.digest(stage1_key, b"institution\x00" + v.encode(), "sha256")[:16]
        d = hmac.digest(inst_key, b"institution\x00" + t, "sha256")[:16]
        return base64.urlsafe_b64encode(d).decode().rstrip("=")

    banned_claims = {
        (r["FEE_YM"], r["APPL_TYPE"], hosp(r["HOSP_ID"]), r["APPL_DATE"], r["CASE_TYPE"], r["SEQ_NO"])
        for r in src_claims.iter_rows(named=True)
    }
    orders = _read(settings, code, "H_NHI_OPDTO").with_columns(pl.col("APPL_DATE").dt.strftime("%Y%m%d"))
    order_claims = set(orders.select(key).unique().iter_rows())
    assert order_claims and banned_claims.isdisjoint(order_claims)
    # ... while kept claims do have their orders (the key form above is the right one).
    kept = _source(root, "H_NHI_OPDTE").filter(~pl.col("ID").is_in(list(ids))).head(200)
    kept_claims = {(r["FEE_YM"], r["APPL_TYPE"], hosp(r["HOSP_ID"]), r["APPL_DATE"], r["CASE_TYPE"],
                    r["SEQ_NO"]) for r in kept.iter_rows(named=True)}
    assert kept_claims & order_claims
    manifest = json.loads((extract / "manifest.json").read_text())
    for file in ("H_NHI_OPDTE", "H_NHI_OPDTO", "H_NHI_ENROL"):
        info = manifest["files"][file]
        assert info["optouts_excluded_rows"] > 0, file
        assert info["rows"] + info["optouts_excluded_rows"] == info["rows_in_vault"]
    assert manifest["files"]["H_NHI_OPDTE"]["optouts_excluded_rows"] == src_claims.height
    assert result.excluded_rows == sum(f["optouts_excluded_rows"] for f in manifest["files"].values())
    # Excluded people per person file: the distinct opted-out people in its source rows.
    for file in ("H_NHI_OPDTE", "H_NHI_ENROL"):
        expected = _source(root, file).filter(pl.col("ID").is_in(list(ids)))["ID"].n_unique()
        assert manifest["files"][file]["optouts_excluded_people"] == expected > 0, file
    assert manifest["files"]["H_NHI_OPDTO"]["optouts_excluded_people"] == 0  # orders name no person
    assert result.excluded_people == sum(f["optouts_excluded_people"] for f in manifest["files"].values())


def test_pseudonyms_differ_between_projects_and_agree_across_files(
    base: tuple[Path, dict], home: tuple[Settings, dict]
) -> None:
    root, _ = base
    settings, codes = home
    for code in codes.values():
        _provision(settings, code)
    a_vis, b_vis = _read(settings, codes["a"], "H_NHI_OPDTE"), _read(settings, codes["b"], "H_NHI_OPDTE")
    assert set(a_vis["ID"]).isdisjoint(set(b_vis["ID"]))
    assert set(a_vis["HOSP_ID"]).isdisjoint(set(b_vis["HOSP_ID"]))
    assert all(len(p) == 22 for p in a_vis["ID"].head(50))
    # Within one project: same person, same pseudonym in every file; same for institutions.
    a_enrol = _read(settings, codes["a"], "H_NHI_ENROL")
    assert len(set(a_vis["ID"]) & set(a_enrol["ID"])) > 100
    a_orders = _read(settings, codes["a"], "H_NHI_OPDTO")
    assert set(a_orders["HOSP_ID"]) <= set(a_vis["HOSP_ID"])
    # One person recomputed by hand appears under the expected pseudonym in both files.
    opted = list(_opted_out_ids(root, START.date()))
    someone = _source(root, "H_NHI_OPDTE").filter(~pl.col("ID").is_in(opted))["ID"][0]
    expected = _stage2(settings, codes["a"], "person", _stage1(settings, someone))
    assert expected in set(a_vis["ID"]) and expected in set(a_enrol["ID"])
    index = pl.read_parquet(settings.projects_dir / codes["a"] / "extract" / "person_index.parquet")
    assert index.schema == {"pseudonym": pl.String, "idx": pl.UInt32}
    assert sorted(index["idx"].to_list()) == list(range(index.height))
    assert set(a_vis["ID"]) | set(a_enrol["ID"]) == set(index["pseudonym"])


def test_only_approved_columns_and_years_coarsened_and_read_only(
    base: tuple[Path, dict], home: tuple[Settings, dict]
) -> None:
    root, _ = base
    settings, codes = home
    code = codes["a"]  # ICD9CM_3 refused, H_NHI_OPDTO 2022 refused
    _provision(settings, code)
    extract = settings.projects_dir / code / "extract"
    assert sorted(p.name for p in (extract / "H_NHI_OPDTO").iterdir()) == ["year=2023"]
    assert sorted(p.name for p in (extract / "H_NHI_OPDTE").iterdir()) == ["year=2022", "year=2023"]
    assert sorted(p.name for p in extract.iterdir() if p.is_dir()) == [
        "H_NHI_ENROL", "H_NHI_OPDTE", "H_NHI_OPDTO", "representativeness"]
    opdte = _read(settings, code, "H_NHI_OPDTE")
    assert opdte.columns == ["FEE_YM", "APPL_TYPE", "HOSP_ID", "APPL_DATE", "CASE_TYPE", "SEQ_NO",
                             "FUNC_TYPE", "FUNC_DATE", "ID_BIRTHDAY", "ID", "ID_S", "ICD9CM_1",
                             "ICD9CM_2"]
    assert _read(settings, code, "H_NHI_ENROL").columns == ["PREM_YM", "ID", "ID1_CITY"]
    # Coarsening: birth date rounded down to its month, still a date; visit date kept
    # (coarsen: none). Every kept visit's value is its source birth date so rounded.
    assert opdte.schema["ID_BIRTHDAY"] == pl.Date and opdte.schema["FUNC_DATE"] == pl.Date
    source = _source(root, "H_NHI_OPDTE").filter(~pl.col("ID").is_in(list(_opted_out_ids(root, START.date()))))
    expected = source.select(pl.col("ID_BIRTHDAY").str.to_date("%Y%m%d").dt.month_start()).to_series().sort()
    assert opdte["ID_BIRTHDAY"].sort().to_list() == expected.to_list()
    assert (opdte["ID_BIRTHDAY"].dt.day() == 1).all()
    assert opdte["FUNC_DATE"].sort().to_list() == source["FUNC_DATE"].str.to_date("%Y%m%d").sort().to_list()
    # Read-only: folders 0550, files 0440; pseudonym registry custodian-only.
    for path in [extract, *extract.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o550 if path.is_dir() else 0o440), path
    assert (settings.projects_dir / code / "pseudonyms.parquet").stat().st_mode & 0o777 == 0o600
    # The dictionary documents exactly the columns provided.
    text = (extract / "data_dictionary.md").read_text()
    assert "`ICD9CM_2`" in text and "`ICD9CM_3`" not in text and "`_source`" not in text
    assert "rounded down to the first day of its month" in text and "person pseudonym" in text
    assert "ID_BIRTHDAY" in (extract / "data_dictionary.html").read_text()
    manifest = json.loads((extract / "manifest.json").read_text())
    for info in manifest["files"].values():
        for part in info["parts"]:
            assert hashlib.sha256((extract / part["path"]).read_bytes()).hexdigest() == part["sha256"]


_KILL_SCRIPT = """
import os, signal, sys
from enclave.config import load_settings
from enclave.state.db import session_scope
from pipelines.provision import extract, provision_project
extract.publish = lambda stage, root: os.kill(os.getpid(), signal.SIGKILL)
settings = load_settings(sys.argv[1])
with session_scope(settings) as s:
    provision_project(s, settings, code=sys.argv[2], actor="alice")
"""


def _killed_run(settings: Settings, code: str) -> None:
    env = {**os.environ, "ENCLAVE_NOW": START.isoformat()}
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(settings.home), code],
                          cwd=REPO, env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]


def test_killed_provisioning_leaves_no_extract_and_rerun_succeeds(home: tuple[Settings, dict]) -> None:
    settings, codes = home
    code = codes["a"]
    root = settings.projects_dir / code
    _killed_run(settings, code)
    assert not (root / "extract").exists()
    assert not (root / "pseudonyms.parquet").exists()
    assert list(root.glob(".tmp-extract-*")), "the killed run should have left its staging folder"
    assert list(root.glob(".tmp-file-*")), "the killed run should have left its staged pseudonym registry"
    result = _provision(settings, code)
    assert (root / "extract" / "manifest.json").is_file() and result.rows > 0
    assert not list(root.glob(".tmp-*"))
    # A killed re-run leaves the previous extract untouched.
    before = (root / "extract" / "manifest.json").read_bytes()
    _killed_run(settings, code)
    assert (root / "extract" / "manifest.json").read_bytes() == before
    again = _provision(settings, code)
    assert again.rows == result.rows
    assert not list(root.glob(".tmp-*"))


def _expire(settings: Settings, code: str) -> None:
    with session_scope(settings) as s:
        end = service.get_project(s, code).period_end
    assert end is not None
    clock.set_clock(datetime(end.year, end.month, end.day, 10, tzinfo=clock.LOCAL_ZONE) + (
        datetime(2000, 1, 2) - datetime(2000, 1, 1)))
    with session_scope(settings) as s:
        report = service.run_due_jobs(s, settings)
    assert code in report.expired


def test_closure_deletes_extract_and_destroys_key(home: tuple[Settings, dict]) -> None:
    from pipelines.provision import reidentify
    from pipelines.provision.errors import ReidError

    settings, codes = home
    code = codes["a"]
    _provision(settings, code)
    root = settings.projects_dir / code
    keys = KeyStore.for_home(settings.keys_dir)
    wrapped = project_key_path(keys, code)
    blob = wrapped.read_bytes()
    (root / "scratch" / "notes.txt").write_text("work in progress")
    _expire(settings, code)
    assert not (root / "extract").exists() and not (root / "scratch").exists()
    assert not (root / "pseudonyms.parquet").exists()
    assert not wrapped.exists()
    with pytest.raises(KeyDestroyedError):
        project_key(keys, code)
    # The wrapped key was overwritten and removed, not just renamed.
    assert blob not in b"".join(p.read_bytes() for p in settings.keys_dir.rglob("*") if p.is_file())
    with session_scope(settings) as s, pytest.raises(ReidError):
        reidentify.request(s, settings, actor="alice", code=code, pseudonyms=["A" * 22], reason="audit")
    with session_scope(settings) as s:
        actions = [a for (a,) in s.query(AuditEntry.action).filter(AuditEntry.project == code)]
    assert "provision.closure" in actions


def test_reidentification_needs_a_second_person(base: tuple[Path, dict], home: tuple[Settings, dict]) -> None:
    from enclave.errors import SeparationOfDutiesError
    from pipelines.provision import reidentify
    from pipelines.provision.errors import ReidError

    root, _ = base
    settings, codes = home
    code = codes["a"]
    _provision(settings, code)
    kept = _source(root, "H_NHI_OPDTE").filter(~pl.col("ID").is_in(list(_opted_out_ids(root, START.date()))))
    person = kept["ID"][0]
    pseudonym = _stage2(settings, code, "person", _stage1(settings, person))
    with session_scope(settings) as s, pytest.raises(EnclaveErrorType):
        reidentify.request(s, settings, actor="alice", code=code, pseudonyms=[pseudonym], reason=" ")
    with session_scope(settings) as s, pytest.raises(PermissionDeniedType):
        reidentify.request(s, settings, actor="chen.wei", code=code, pseudonyms=[pseudonym],
                           reason="suspected fraud case 12")
    with session_scope(settings) as s:
        request_id = reidentify.request(s, settings, actor="alice", code=code, pseudonyms=[pseudonym],
                                        reason="court order 2026-17").id
    with session_scope(settings) as s, pytest.raises(ReidError):
        reidentify.resolve(s, settings, actor="alice", request_id=request_id)
    with session_scope(settings) as s, pytest.raises(SeparationOfDutiesError):
        reidentify.decide(s, settings, actor="alice", request_id=request_id, approve=True, reason="ok")
    with session_scope(settings) as s:
        reidentify.decide(s, settings, actor="bob", request_id=request_id, approve=True,
                          reason="order verified")
    with session_scope(settings) as s:
        result = reidentify.resolve(s, settings, actor="alice", request_id=request_id)
    assert result.identifiers == [{"pseudonym": pseudonym, "kind": "person", "identifier": person}]
    assert result.path.stat().st_mode & 0o777 == 0o600
    assert json.loads(result.path.read_text())["identifiers"][0]["identifier"] == person
    with session_scope(settings) as s, pytest.raises(ReidError):
        reidentify.resolve(s, settings, actor="alice", request_id=request_id)  # only once
    with session_scope(settings) as s:
        entries = s.query(AuditEntry).filter(AuditEntry.action.like("reid.%")).all()
        assert [e.action for e in entries] == ["reid.request", "reid.approve", "reid.resolve"]
        for e in entries:
            assert person not in f"{e.object} {e.reason} {e.details}"
            assert json.loads(e.details)["request"] == request_id


def test_no_key_bytes_in_logs_or_audit(base: tuple[Path, dict], home: tuple[Settings, dict],
                                       caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture) -> None:
    from typer.testing import CliRunner

    from enclave.cli import _register, app

    caplog.set_level("DEBUG")
    settings, codes = home
    code = codes["a"]
    _register()
    runner = CliRunner()
    env = {"ENCLAVE_HOME": str(settings.home), "ENCLAVE_USER": "alice", "ENCLAVE_NOW": START.isoformat()}
    out = runner.invoke(app, ["project", "provision", code, "--json"], env=env)
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["rows"] > 0
    keys = KeyStore.for_home(settings.keys_dir)
    secrets_ = [project_key(keys, code).reveal(), keys.stage1_key().reveal(), keys.escrow_key().reveal()]
    secrets_ += [p.read_bytes() for p in (settings.keys_dir / "master").glob("*.key")]
    rotated = runner.invoke(app, ["keys", "rotate"], env=env)
    assert rotated.exit_code == 0, rotated.output
    assert project_key(KeyStore.for_home(settings.keys_dir), code).reveal() == secrets_[0]
    again = runner.invoke(app, ["optout", "apply", "--json"], env=env)
    assert again.exit_code == 0, again.output
    _expire(settings, code)
    forms = []
    for raw in secrets_:
        forms += [raw, raw.hex().encode(), base64.b64encode(raw), base64.urlsafe_b64encode(raw)]
    texts = [out.output, rotated.output, again.output, caplog.text, *capfd.readouterr()]
    for form in forms:
        for text in texts:
            assert form.decode("latin-1") not in text
    with session_scope(settings) as s:
        audit_text = "\n".join(f"{e.actor} {e.action} {e.object} {e.reason} {e.details}"
                                for e in s.query(AuditEntry).all())
    assert "keys.rotate" in audit_text and "project.provision" in audit_text
    for form in forms:
        assert form.decode("latin-1") not in audit_text
    # No file outside the key folder (state store, audit anchor, extracts, reports) holds them.
    for path in settings.home.rglob("*"):
        if path.is_file() and settings.keys_dir not in path.parents:
            data = path.read_bytes()
            assert not any(form in data for form in forms), path
