"""Ingest on generated data with injected faults: quarantine, reconciliation, no raw
identifier in the vault, crash safety, idempotence, great-expectations cross-check."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import psutil
import pyarrow.parquet as pq
import pytest

from catalog import load_catalog
from enclave.config import Settings, load_settings, packaged_policies_dir
from enclave.home import init_home
from enclave.keys import KeyStore
from enclave.state.db import session_scope
from pipelines import person_summary, vault
from pipelines.ingest import IngestError, ingest_directory
from pipelines.ingest.errors import ValidatorDisagreement
from pipelines.ingest.tokens import open_escrow, stage1_token
from pipelines.synth import generate_source

PEOPLE = 700


@pytest.fixture(scope="module")
def faulty_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("src-utf8")
    generate_source(out, people=PEOPLE, years=[2023], seed=11, defect_rate=0.01)
    return out


@pytest.fixture(scope="module")
def big5_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("src-big5")
    generate_source(out, people=400, years=[2023], seed=12, encoding="big5", defect_rate=0.01)
    return out


def _quarantine(settings: Settings) -> pl.DataFrame:
    return pl.read_parquet(sorted(settings.quarantine_dir.glob("batch=*/*.parquet")))


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") - 1  # minus the header


def _score(settings: Settings, source: Path) -> None:
    truth = pl.read_csv(source / "ground_truth" / "defects.csv", infer_schema=False).with_columns(
        pl.col("line").cast(pl.Int64)
    )
    assert truth.height > 50, "the generator injected too few faults to test anything"
    q = _quarantine(settings).select("source_file", "line", "rule")
    found = truth.join(q, left_on=["file", "line"], right_on=["source_file", "line"], how="left")
    missed = found.filter(pl.col("rule").is_null())
    assert missed.is_empty(), f"injected faults not quarantined:\n{missed.head(10)}"
    wrong = found.filter(pl.col("rule") != pl.col("kind"))
    assert wrong.is_empty(), f"quarantined under the wrong rule:\n{wrong.head(10)}"
    # No clean row is quarantined, except order rows whose claim was itself quarantined.
    extra = q.join(truth, left_on=["source_file", "line"], right_on=["file", "line"], how="anti")
    assert set(extra.get_column("rule").unique().to_list()) <= {"missing_parent"}
    catalog = load_catalog()
    for src_name in extra.get_column("source_file").unique().to_list():
        match = catalog.match_source(src_name)
        assert match is not None and match[0].parent is not None, src_name


def test_every_injected_fault_is_quarantined_and_counts_reconcile(settings: Settings, faulty_source: Path) -> None:
    result = ingest_directory(settings, faulty_source, actor="alice")
    assert result.status == "committed"
    assert result.reconciled
    for f in result.files:
        assert f.rows_read == _lines(faulty_source / f.source_file), f.source_file
        assert f.rows_read == f.rows_accepted + f.rows_quarantined
    _score(settings, faulty_source)
    # What is stored matches what is reported, row for row.
    with session_scope(settings) as session:
        for f in result.files:
            paths = vault.file_paths(settings, session, f.file_type)
            stored = duckdb.sql(
                f"SELECT count(*) FROM read_parquet({[str(p) for p in paths]}) WHERE _source = '{f.source_file}'"
            ).fetchall()[0][0]
            assert stored == f.rows_accepted, f.source_file
    q = _quarantine(settings)
    assert (
        q.filter(pl.col("rule") == "bad_encoding")
        .get_column("raw_bytes")
        .map_elements(lambda b: b"\x80\xff" in b or b"\xff" in b, return_dtype=pl.Boolean)
        .all()
    )
    report = json.loads((settings.batches_dir / result.batch / "report.json").read_text())
    assert report["reconciled"] is True
    opdte = next(f for f in report["files"] if f["file_type"] == "H_NHI_OPDTE")
    checked = {e["expectation"] for c in opdte["validation"] for e in c["expectations"]}
    assert "expect_column_values_to_pass_catalog_check" in checked
    assert "expect_column_values_to_be_in_set" in checked
    assert (settings.batches_dir / result.batch / "report.html").read_text().count("<tr>") > 20


def test_big5_input(settings: Settings, big5_source: Path) -> None:
    result = ingest_directory(settings, big5_source, actor="alice")
    # Files with Chinese text are detected as Big5; pure-ASCII files decode identically either way.
    encodings = {f.file_type: f.encoding for f in result.files}
    assert encodings["H_NHI_ENROL"] == encodings["H_NHI_MEDFA"] == "cp950"
    assert result.reconciled
    _score(settings, big5_source)


def test_undecodable_byte_is_quarantined_with_its_line(settings: Settings, faulty_source: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    clean = (faulty_source / "H_NHI_MEDFA_2023.csv").read_bytes().split(b"\n")
    clean[4] = clean[4][:12] + b"\xff\xfe" + clean[4][12:]
    (src / "H_NHI_MEDFA_2023.csv").write_bytes(b"\n".join(clean))
    result = ingest_directory(settings, src, actor="alice")
    q = _quarantine(settings)
    assert q.select("line", "rule").to_dicts() == [{"line": 5, "rule": "bad_encoding"}]
    assert b"\xff\xfe" in q.get_column("raw_bytes")[0]
    assert q.get_column("detail")[0] == "bytes ff at column 13 are not valid utf-8"
    assert result.files[0].rows_quarantined == 1
    assert result.files[0].rows_accepted == len([x for x in clean if x]) - 2


@pytest.mark.parametrize("action", ["report", "quarantine"])
def test_soft_reference_action_policy(settings: Settings, faulty_source: Path, tmp_path: Path, action: str) -> None:
    """Claims whose person is not in enrollment: reported by default, quarantined by policy."""
    policies = tmp_path / "policies"
    shutil.copytree(packaged_policies_dir(), policies)
    text = (policies / "ingest.yaml").read_text(encoding="utf-8")
    (policies / "ingest.yaml").write_text(
        re.sub(r"(?m)^soft_reference_action:.*$", f"soft_reference_action: {action}", text), encoding="utf-8"
    )
    settings = replace(settings, policies_dir=policies)
    src = tmp_path / "src"
    src.mkdir()
    for name in ("H_NHI_OPDTE_2023.csv", "H_NHI_MEDFA_2023.csv"):  # no enrollment file anywhere
        shutil.copy(faulty_source / name, src / name)
    result = ingest_directory(settings, src, actor="alice")
    assert result.status == "committed" and result.reconciled
    opd = next(f for f in result.files if f.source_file == "H_NHI_OPDTE_2023.csv")
    unresolved = [w for w in opd.warnings if w["rule"] == "unresolved_reference" and "H_NHI_ENROL" in w["detail"]]
    if action == "report":
        assert len(unresolved) == 1 and unresolved[0]["rows"] == opd.rows_accepted
        assert "unresolved_reference" not in opd.quarantined_by_rule
    else:
        assert not unresolved
        assert opd.rows_accepted == 0
        assert opd.quarantined_by_rule["unresolved_reference"] > 0


def test_full_width_digits_are_quarantined_not_accepted(
    settings: Settings, faulty_source: Path, tmp_path: Path
) -> None:
    """Full-width digits (common in hand-keyed Taiwanese data) look like digits to Unicode-aware
    regular expressions; every rule and great-expectations must still refuse them, per row."""
    src = tmp_path / "src"
    src.mkdir()
    lines = (faulty_source / "H_NHI_OPDTE_2023.csv").read_text(encoding="utf-8").split("\n")
    header = lines[0].split(",")
    truth = pl.read_csv(faulty_source / "ground_truth" / "defects.csv", infer_schema=False)
    faulty = {int(x) for x in truth.filter(pl.col("file") == "H_NHI_OPDTE_2023.csv").get_column("line").to_list()}
    clean = [n for n in range(2, len(lines)) if n not in faulty and lines[n - 1].strip()][:4]
    full_width = str.maketrans("0123456789", "０１２３４５６７８９")
    edits = {}
    for line_no, column in zip(clean, ["ID", "FUNC_DATE", "T_DOT", "SEQ_NO"], strict=True):
        fields = lines[line_no - 1].split(",")
        i = header.index(column)
        fields[i] = fields[i][:-1] + fields[i][-1].translate(full_width)
        lines[line_no - 1] = ",".join(fields)
        edits[line_no] = column
    (src / "H_NHI_OPDTE_2023.csv").write_text("\n".join(lines), encoding="utf-8")
    result = ingest_directory(settings, src, actor="alice")
    assert result.status == "committed" and result.reconciled
    q = _quarantine(settings).filter(pl.col("line").is_in(list(edits)))
    assert dict(zip(q.get_column("line").to_list(), q.get_column("column").to_list(), strict=True)) == edits


def _raw_identifiers(source: Path) -> tuple[set[str], list[str]]:
    catalog = load_catalog()
    ids: set[str] = set()
    texts: list[str] = []
    for path in source.glob("*.csv"):
        definition, _ = catalog.match_source(path.name)
        frame = pl.read_csv(
            path, infer_schema=False, quote_char=None, truncate_ragged_lines=True, encoding="utf8-lossy"
        )
        for col in definition.identifier_columns:
            ids.update(v for v in frame.get_column(col.name).drop_nulls().to_list() if len(v) >= 8)
        for col in definition.drop_columns:
            texts.extend(v for v in frame.get_column(col.name).drop_nulls().unique().to_list() if len(v) >= 3)
    return ids, texts


def test_no_raw_identifier_anywhere_in_the_vault(settings: Settings, faulty_source: Path) -> None:
    ingest_directory(settings, faulty_source, actor="alice")
    ids, texts = _raw_identifiers(faulty_source)
    assert len(ids) > PEOPLE and len(texts) > PEOPLE
    vault_files = [p for p in settings.vault_dir.rglob("*") if p.is_file()]
    assert vault_files
    candidate = re.compile(rb"[A-Z][A-Z0-9]\d{8}|\d{8,10}")
    text_re = re.compile("|".join(re.escape(t) for t in texts).encode())
    for path in vault_files:
        blob = path.read_bytes()  # raw bytes: footers, statistics and metadata included
        leaked = {m.decode() for m in candidate.findall(blob)} & ids
        assert not leaked, f"{path}: raw identifiers {sorted(leaked)[:3]}"
        assert text_re.search(blob) is None, f"{path}: a name, address or phone number"
        # ...and decoded: every value of every column, compressed pages included.
        table = pq.read_table(path)
        for column in table.column_names:
            values = {str(v) for v in table.column(column).to_pylist() if v is not None}
            assert not (values & ids), f"{path}:{column}"
            assert not (values & set(texts)), f"{path}:{column}"


def test_tokens_are_stage1_hmac_and_the_escrow_opens_only_with_its_key(settings: Settings, faulty_source: Path) -> None:
    ingest_directory(settings, faulty_source, actor="alice")
    enrol = pl.read_csv(
        faulty_source / "H_NHI_ENROL_2023.csv",
        infer_schema=False,
        quote_char=None,
        truncate_ragged_lines=True,
        encoding="utf8-lossy",
    )
    person = enrol.get_column("ID")[0]
    keys = KeyStore.for_home(settings.keys_dir)
    token = stage1_token(keys.stage1_key(), "person", person)
    with session_scope(settings) as session:
        paths = vault.file_paths(settings, session, "H_NHI_ENROL")
    tokens = pl.read_parquet(paths).get_column("ID")
    assert token in tokens.to_list()
    assert tokens.dtype == pl.Binary and {len(t) for t in tokens.to_list()} == {16}
    escrow = pl.read_parquet(sorted(vault.escrow_dir(settings).glob("batch=*/*.parquet")))
    sealed = escrow.filter((pl.col("token") == token) & (pl.col("kind") == "person")).get_column("sealed")[0]
    assert person.encode() not in sealed
    assert open_escrow(keys.escrow_key(), "person", sealed) == person


def test_person_summaries_list_exactly_the_people_of_the_accepted_rows(settings: Settings, faulty_source: Path) -> None:
    ingest_directory(settings, faulty_source, actor="alice")
    catalog = load_catalog()
    (batch,) = sorted(settings.vault_dir.glob("batch=*"))
    summaries = sorted((batch / "people").glob("file=*/year=*.parquet"))
    with_person = {d.name.split("=", 1)[1] for d in batch.glob("file=*")
                   if person_summary.person_column(catalog.file(d.name.split("=", 1)[1]))}
    assert {p.parent.name.split("=", 1)[1] for p in summaries} == with_person and with_person
    for path in summaries:
        fd = catalog.file(path.parent.name.split("=", 1)[1])
        person = person_summary.person_column(fd)
        rows = pl.read_parquet(sorted((batch / path.parent.name / path.stem).glob("*.parquet")))
        summary = pl.read_parquet(path)
        assert path.stat().st_mode & 0o777 == 0o600
        assert summary["token"].is_unique().all() and summary["token"].null_count() == 0
        assert set(summary["token"].to_list()) == set(rows[person].drop_nulls().to_list()), path
        if person_summary.has_demographics(fd):  # each person's sex and birth date occur in their rows
            seen = rows.select(pl.col(person).alias("token"), pl.col("ID_S").alias("sex"),
                               pl.col("ID_BIRTHDAY").alias("birth")).unique()
            assert summary.select("token", "sex", "birth").join(seen, on=["token", "sex", "birth"],
                                                                 how="anti", nulls_equal=True).is_empty()
        else:
            assert summary["sex"].null_count() == summary.height


def test_rerun_is_idempotent(settings: Settings, faulty_source: Path) -> None:
    first = ingest_directory(settings, faulty_source, actor="alice")
    snapshot = sorted((p, p.stat().st_mtime_ns) for p in settings.vault_dir.rglob("*.parquet"))
    again = ingest_directory(settings, faulty_source, actor="alice")
    assert again.status == "already_ingested"
    assert again.batch == first.batch
    assert sorted((p, p.stat().st_mtime_ns) for p in settings.vault_dir.rglob("*.parquet")) == snapshot


def test_a_file_that_cannot_be_parsed_fails_the_batch(settings: Settings, faulty_source: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "H_NHI_MEDFA_2023.csv").write_bytes((faulty_source / "H_NHI_MEDFA_2023.csv").read_bytes())
    data = (faulty_source / "H_NHI_DRUG_2023.csv").read_bytes().split(b"\n", 1)[1]
    (src / "H_NHI_DRUG_2023.csv").write_bytes(b"DRUG_NO,SOMETHING_ELSE\n" + data)
    with pytest.raises(IngestError, match=r"H_NHI_DRUG_2023.csv: line 1 \(header\) does not match the catalog"):
        ingest_directory(settings, src, actor="alice")
    assert not list(settings.vault_dir.iterdir())
    assert not list(settings.quarantine_dir.iterdir())
    with pytest.raises(IngestError, match="no source file recognised"):
        ingest_directory(settings, tmp_path, actor="alice")


def _environ(proc: psutil.Process) -> dict[str, str]:
    try:
        return proc.environ()
    except psutil.Error:
        return {}


def _run_cli(settings: Settings, source: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "ENCLAVE_HOME": str(settings.home), "ENCLAVE_USER": "alice", **env}
    return subprocess.run(
        [sys.executable, "-m", "enclave", "ingest", str(source), "--json"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _worker_policies(tmp_path: Path) -> Path:
    """The shipped policies, except that ingest splits even these small files into spans
    and runs them in worker processes."""
    folder = tmp_path / "policies-workers"
    shutil.copytree(packaged_policies_dir(), folder)
    text = (folder / "ingest.yaml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^span_min_bytes:.*$", "span_min_bytes: 20000", text)
    text = re.sub(r"(?m)^workers:.*$", "workers: 2", text)
    (folder / "ingest.yaml").write_text(text, encoding="utf-8")
    return folder


def test_worker_processes_give_the_same_result(
    settings: Settings, faulty_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.ingest import workers

    spawned: list[int] = []
    real_runner = workers.span_runner

    def counting_runner(n: int, *args, **kwargs):
        spawned.append(n)
        return real_runner(n, *args, **kwargs)

    monkeypatch.setattr("pipelines.ingest.batch.span_runner", counting_runner)
    inline = ingest_directory(settings, faulty_source, actor="alice")
    parallel_settings = load_settings(tmp_path / "home-workers")
    parallel_settings = replace(parallel_settings, policies_dir=_worker_policies(tmp_path))
    init_home(
        parallel_settings,
        admin_username="alice",
        admin_full_name="Alice Lin",
        admin_unit="NHIA",
        admin_password="correct-horse-battery-staple",
    )
    parallel = ingest_directory(parallel_settings, faulty_source, actor="alice")
    assert spawned == [1, 2], "the first batch must run in-process, the second in worker processes"
    assert parallel.reconciled and parallel.status == "committed"
    summary = [(f.source_file, f.rows_read, f.rows_accepted, f.quarantined_by_rule, f.warnings) for f in inline.files]
    assert [
        (f.source_file, f.rows_read, f.rows_accepted, f.quarantined_by_rule, f.warnings) for f in parallel.files
    ] == (summary)
    assert parallel.tokens_hashed == inline.tokens_hashed
    _score(parallel_settings, faulty_source)
    cols = ["source_file", "line", "rule", "column", "value", "raw"]
    assert (
        _quarantine(parallel_settings)
        .select(cols)
        .sort("source_file", "line")
        .equals(_quarantine(settings).select(cols).sort("source_file", "line"))
    )
    # Same rows in the vault; tokens differ only because each home has its own stage-1 key.
    catalog = load_catalog()
    for fd in catalog.files:
        with session_scope(settings) as s1, session_scope(parallel_settings) as s2:
            a, b = vault.file_paths(settings, s1, fd.name), vault.file_paths(parallel_settings, s2, fd.name)
        if not a:
            assert not b
            continue
        ids = [c.name for c in fd.identifier_columns]
        frames = [pl.read_parquet(p, hive_partitioning=False).drop(ids).sort("_source", "_line") for p in (a, b)]
        assert frames[0].equals(frames[1]), fd.name
    # No span leaves anything behind in staging.
    assert not list(parallel_settings.tmp_dir.iterdir())
    # The re-run's spans start before the checksums are known and are stopped when they show
    # the batch was ingested already.
    again = ingest_directory(parallel_settings, faulty_source, actor="alice")
    assert again.status == "already_ingested" and again.batch == parallel.batch
    assert not list(parallel_settings.tmp_dir.iterdir())


def test_files_ingested_before_are_skipped_by_worker_batches(
    settings: Settings, faulty_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.ingest import batch, workers

    settings = replace(settings, policies_dir=_worker_policies(tmp_path))
    # The checksums are taken only once a speculative span has reported progress, so that
    # reports of spans that are then stopped certainly arrive (and must not be counted).
    early_report = threading.Event()
    real_report, real_checksums = workers.SpanRunner.report, batch.with_checksums

    def report(runner, run: int, item: tuple) -> None:
        real_report(runner, run, item)
        early_report.set()

    def checksums_after_a_report(sources):
        assert early_report.wait(120), "no span reported progress"
        return real_checksums(sources)

    monkeypatch.setattr(workers.SpanRunner, "report", report)
    monkeypatch.setattr(batch, "with_checksums", checksums_after_a_report)
    first_dir, both_dir = tmp_path / "first", tmp_path / "both"
    first_dir.mkdir()
    both_dir.mkdir()
    for path in faulty_source.glob("H_NHI_*.csv"):
        shutil.copy(path, both_dir / path.name)
        if "OPDTE" in path.name or "ENROL" in path.name:
            shutil.copy(path, first_dir / path.name)
    first = ingest_directory(settings, first_dir, actor="alice")
    reported: dict[str, list[int]] = {}

    def progress(name: str, lines: int, nbytes: int) -> None:
        seen = reported.setdefault(name, [0, 0])
        seen[0] += lines
        seen[1] += nbytes

    early_report.clear()
    both = ingest_directory(settings, both_dir, actor="alice", progress=progress)
    assert both.status == "committed" and both.reconciled
    status = {f.source_file: f.status for f in both.files}
    # Progress counts every line and byte after the header of the files processed, once: the
    # speculative spans of the files ingested before were stopped and their reports dropped.
    expected = {}
    for f in both.files:
        if f.status == "ingested":
            data = (both_dir / f.source_file).read_bytes()
            expected[f.source_file] = [f.rows_read, len(data) - len(data.split(b"\n", 1)[0]) - 1]
    assert reported == expected
    for f in first.files:
        assert status[f.source_file] == f"already_ingested:{first.batch}"
    assert {n for n, st in status.items() if st == "ingested"} == {
        p.name for p in both_dir.glob("*.csv") if p.name not in {f.source_file for f in first.files}
    }
    _score(settings, faulty_source)
    assert not list(settings.tmp_dir.iterdir())


@pytest.mark.parametrize(
    ("point", "in_workers"),
    [("after_first_chunk", False), ("after_publish", False), ("after_first_chunk", True)],
)
def test_killed_ingest_leaves_the_vault_unchanged_and_reruns(
    settings: Settings, faulty_source: Path, tmp_path: Path, point: str, in_workers: bool
) -> None:
    env = {"ENCLAVE_POLICIES_DIR": str(_worker_policies(tmp_path))} if in_workers else {}
    killed = _run_cli(settings, faulty_source, ENCLAVE_FAULT_POINT=point, **env)
    assert killed.returncode == -9, killed.stderr
    if in_workers:
        # The kernel kills the other workers with their parent (PR_SET_PDEATHSIG): none may
        # go on writing into the staging area the re-run is about to use.
        home = str(settings.home)
        left = [p for p in psutil.process_iter() if _environ(p).get("ENCLAVE_HOME") == home]
        _gone, alive = psutil.wait_procs(left, timeout=15)
        assert not alive, f"worker processes survived their parent: {alive}"
    with session_scope(settings) as session:
        assert vault.committed_batches(session) == []
        # Nothing a reader would take: file_paths only lists committed batches.
        assert vault.file_paths(settings, session, "H_NHI_OPDTE") == []
    if point == "after_first_chunk":
        assert not list(settings.vault_dir.glob("batch=*"))
    rerun = _run_cli(settings, faulty_source, **env)
    assert rerun.returncode == 0, rerun.stderr
    data = json.loads(rerun.stdout)
    assert data["status"] == "committed" and data["reconciled"]
    assert len(list(settings.vault_dir.glob("batch=*"))) == 1
    assert not list(settings.tmp_dir.iterdir())


def test_validator_disagreement_fails_closed(settings: Settings, faulty_source: Path, monkeypatch) -> None:
    from catalog import checks

    original = checks.CHECKS["tw_national_id"]
    # A scalar checksum that wrongly accepts everything: great-expectations now disagrees
    # with the vectorised rule, and the batch must not be published.
    monkeypatch.setitem(
        checks.CHECKS,
        "tw_national_id",
        original.__class__(
            **{
                **original.__dict__,
                "scalar": lambda v: v is not None,
                "array": lambda values: np.array([v is not None for v in values]),
            }
        ),
    )
    with pytest.raises(ValidatorDisagreement, match="disagree"):
        ingest_directory(settings, faulty_source, actor="alice")
    assert not list(settings.vault_dir.glob("batch=*"))


def test_only_custodians_ingest(settings: Settings, faulty_source: Path) -> None:
    from enclave.errors import PermissionDenied
    from enclave.users import add_user

    with session_scope(settings) as session:
        add_user(
            session,
            settings,
            actor="alice",
            username="rita",
            full_name="Rita",
            unit="NTU",
            roles=["researcher"],
            password="a-long-password",
        )
    with pytest.raises(PermissionDenied):
        ingest_directory(settings, faulty_source, actor="rita")
