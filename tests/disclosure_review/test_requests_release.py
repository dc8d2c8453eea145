"""Release, verification, recall, differencing through requests, and the CLI end to end."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin
from pyroaring import BitMap
from typer.testing import CliRunner

from disclosure_review.cells import read_cells, write_cells
from disclosure_review.context import PSEUDONYM_REGISTRY, resolve_project_context
from disclosure_review.differencing import CellMembership
from disclosure_review.errors import UnknownProjectError
from disclosure_review.release import ReleaseVerificationError, verify_release
from disclosure_review.requests import (
    Decision,
    InvalidTransitionError,
    Status,
    create_request,
    decide,
    get_request,
    recall,
    release,
)
from enclave.cli import _app, _register
from enclave.config import Settings
from enclave.keys import KeyStore
from enclave.state.db import session_scope

PROJECT = "P2026-0001"


def _table(folder: Path, name: str, rows: dict[str, int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("group,n\n" + "".join(f"{k},{v}\n" for k, v in rows.items()))
    return path


def _with_cells(path: Path, cells: dict[str, range | list[int]], suffix: str) -> Path:
    """Write the output's sidecar: one cell per group with the given unit indexes."""
    write_cells(path.with_name(path.name + suffix), [
        CellMembership(path.stem, f"group={label}", "person", BitMap(list(units)))
        for label, units in cells.items()
    ])
    return path


def _submit(settings: Settings, paths: list[Path]) -> str:
    with session_scope(settings) as session:
        return create_request(session, settings, actor="rex", project=PROJECT, paths=paths,
                              purpose="Table 2").code


def _approve(settings: Settings, code: str) -> None:
    with session_scope(settings) as session:
        decide(session, settings, actor="vera", code=code, decision=Decision.APPROVE,
               reason="all counts above 5")


def _verify_key(settings: Settings):
    return KeyStore.for_home(settings.keys_dir).audit_verify_key()


# -- CLI: the full path -----------------------------------------------------------------------
def test_cli_request_review_release_verify_recall_notify(enclave_project: Settings,
                                                         tmp_path: Path) -> None:
    _register()
    runner = CliRunner()
    table = _table(tmp_path / "work", "table1.csv", {"A": 10, "B": 12})

    res = runner.invoke(_app.app, ["export", "request", str(table), "--project", PROJECT,
                                   "--purpose", "Table 1 of the paper", "--as", "rex", "--json"])
    assert res.exit_code == 0, res.output
    submitted = json.loads(res.output)
    code = submitted["code"]
    assert submitted["status"] == "queued" and submitted["check_report"]["verdict"] == "pass"

    res = runner.invoke(_app.app, ["review", "list", "--as", "vera", "--json"])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.output)
    assert row["code"] == code and row["you_may_review"] is True
    res = runner.invoke(_app.app, ["review", "list", "--as", "rita", "--json"])
    assert json.loads(res.output)[0]["you_may_review"] is False
    # A researcher sees no queue.
    res = runner.invoke(_app.app, ["review", "list", "--as", "rex"])
    assert res.exit_code != 0 and "not a" in str(res.exception)

    res = runner.invoke(_app.app, ["review", "approve", code, "--as", "vera"])
    assert res.exit_code == 2 and "--reason" in res.output  # reason is mandatory
    res = runner.invoke(_app.app, ["review", "show", code, "--as", "vera"])
    assert res.exit_code == 0 and "table1.csv" in res.output
    res = runner.invoke(_app.app, ["review", "approve", code, "--reason", "aggregate, n>5",
                                   "--as", "vera", "--json"])
    assert res.exit_code == 0, res.output
    released = json.loads(res.output)
    assert released["status"] == "released"
    outbox = Path(released["outbox"])
    assert outbox == enclave_project.projects_dir / PROJECT / "outbox" / code
    assert (outbox / "table1.csv").read_text() == table.read_text()

    manifest = json.loads((outbox / "manifest.json").read_text())
    assert manifest["request"] == code and manifest["purpose"] == "Table 1 of the paper"
    assert manifest["reviewers"][0]["reviewer"] == "vera"
    assert manifest["checker"]["verdict"] == "pass"
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["files"][0]["sha256"])

    res = runner.invoke(_app.app, ["export", "verify-release", str(outbox), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["status"] == "released"

    res = runner.invoke(_app.app, ["export", "status", code, "--as", "pia", "--json"])
    assert json.loads(res.output)["status"] == "released"
    res = runner.invoke(_app.app, ["export", "status", code, "--as", "oscar"])
    assert res.exit_code != 0  # not a member, not a reviewer

    res = runner.invoke(_app.app, ["export", "recall", code, "--reason",
                                   "cell B differs by 2 from table 3 of the poster",
                                   "--as", "walt", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["notified"] == ["pia"]
    res = runner.invoke(_app.app, ["notifications", "list", "--as", "pia", "--json"])
    (note,) = json.loads(res.output)
    assert note["kind"] == "export.recall" and code in note["subject"]
    assert "destroy" in note["subject"].lower() and "poster" in note["body"]
    res = runner.invoke(_app.app, ["notifications", "list", "--as", "rex", "--json"])
    assert json.loads(res.output) == []
    res = runner.invoke(_app.app, ["export", "verify-release", str(outbox)])
    assert res.exit_code == 1  # intact but recalled

    res = runner.invoke(_app.app, ["audit", "verify", "--json"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(_app.app, ["audit", "log", "--as", "alice", "--json"])
    actions = [r["action"] for r in json.loads(res.output) if r["object"] == code]
    assert actions == ["export.draft", "export.submit", "export.queue", "export.review.approve",
                       "export.approve", "export.release", "export.recall"]


def test_cli_blocked_request_exits_1_and_names_the_cell(enclave_project: Settings,
                                                        tmp_path: Path) -> None:
    _register()
    table = _table(tmp_path, "t.csv", {"A": 5, "B": 12})
    res = CliRunner().invoke(_app.app, ["export", "request", str(table), "--project", PROJECT,
                                        "--purpose", "x", "--as", "rex"])
    assert res.exit_code == 1
    assert "BLOCKED" in res.output and "count_threshold" in res.output
    assert "row[group=A]" in res.output


# -- release integrity ------------------------------------------------------------------------
def test_verify_release_detects_tampering(enclave_project: Settings, tmp_path: Path) -> None:
    code = _submit(enclave_project, [_table(tmp_path, "t.csv", {"A": 10, "B": 12})])
    _approve(enclave_project, code)
    outbox = enclave_project.projects_dir / PROJECT / "outbox" / code
    assert verify_release(outbox, _verify_key(enclave_project))["request"] == code

    target = outbox / "t.csv"
    os.chmod(outbox, 0o755)
    os.chmod(target, 0o644)
    target.write_text("group,n\nA,10\nB,2\n")
    with pytest.raises(ReleaseVerificationError, match=r"t\.csv: SHA-256 .* differs"):
        verify_release(outbox, _verify_key(enclave_project))
    _register()
    res = CliRunner().invoke(_app.app, ["export", "verify-release", str(outbox)])
    assert res.exit_code != 0 and isinstance(res.exception, ReleaseVerificationError)

    target.write_text("group,n\nA,10\nB,12\n")  # restored: verifies again
    verify_release(outbox, _verify_key(enclave_project))
    (outbox / "extra.csv").write_text("smuggled")
    with pytest.raises(ReleaseVerificationError, match="not in the manifest"):
        verify_release(outbox, _verify_key(enclave_project))
    (outbox / "extra.csv").unlink()
    manifest = outbox / "manifest.json"
    os.chmod(manifest, 0o644)
    manifest.write_text(manifest.read_text().replace("Table 2", "Table 9"))
    with pytest.raises(ReleaseVerificationError, match="signature"):
        verify_release(outbox, _verify_key(enclave_project))


def test_release_refuses_a_changed_request_folder(enclave_project: Settings,
                                                  tmp_path: Path) -> None:
    code = _submit(enclave_project, [_table(tmp_path, "t.csv", {"A": 10, "B": 12})])
    copy = enclave_project.home / "exports" / code / "files" / "t.csv"
    os.chmod(copy.parent, 0o755)
    os.chmod(copy, 0o644)
    copy.write_text("group,n\nA,1\nB,12\n")
    with pytest.raises(ReleaseVerificationError, match="changed since submission"), \
            session_scope(enclave_project) as session:
        decide(session, enclave_project, actor="vera", code=code, decision=Decision.APPROVE,
               reason="ok")
    assert not (enclave_project.projects_dir / PROJECT / "outbox" / code).exists()
    with session_scope(enclave_project) as session:
        assert get_request(session, code).status == Status.QUEUED


def test_figures_are_reencoded_on_release(enclave_project: Settings, tmp_path: Path) -> None:
    figure = tmp_path / "km.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "patient A123456789")
    Image.new("RGB", (8, 8), (200, 10, 10)).save(figure, pnginfo=info)
    figure.write_bytes(figure.read_bytes() + b"HIDDEN-PAYLOAD")
    code = _submit(enclave_project, [figure])
    with session_scope(enclave_project) as session:
        request = get_request(session, code)
        assert request.check_verdict == "review"  # figures always go to a person
    _approve(enclave_project, code)
    outbox = enclave_project.projects_dir / PROJECT / "outbox" / code
    released = (outbox / "km.png").read_bytes()
    assert b"HIDDEN-PAYLOAD" not in released and b"A123456789" not in released
    with Image.open(outbox / "km.png") as image:
        assert image.getpixel((0, 0)) == (200, 10, 10)
    manifest = json.loads((outbox / "manifest.json").read_text())
    assert manifest["files"][0]["reencoded"] is True
    verify_release(outbox, _verify_key(enclave_project))


def test_recall_needs_a_reviewer_outside_the_project(enclave_project: Settings,
                                                     tmp_path: Path) -> None:
    from enclave.errors import InputError, SeparationOfDutiesError

    code = _submit(enclave_project, [_table(tmp_path, "t.csv", {"A": 10, "B": 12})])
    _approve(enclave_project, code)
    with pytest.raises(SeparationOfDutiesError), session_scope(enclave_project) as session:
        recall(session, enclave_project, actor="rita", code=code, reason="x")
    with pytest.raises(InputError, match="reason"), session_scope(enclave_project) as session:
        recall(session, enclave_project, actor="walt", code=code, reason="")
    with session_scope(enclave_project) as session:
        notes = recall(session, enclave_project, actor="walt", code=code, reason="differencing")
        assert [n.username for n in notes] == ["pia"]
        request = get_request(session, code)
        assert request.status == Status.RECALLED and request.recall_reason == "differencing"
        with pytest.raises(InvalidTransitionError, match="recalled"):
            release(session, enclave_project, request)


# -- differencing through the request path -----------------------------------------------------
@pytest.mark.parametrize("suffix", [".cells.parquet", ".cells.json"])
def test_differencing_blocks_a_second_output_isolating_three_people(
    enclave_project: Settings, tmp_path: Path, suffix: str
) -> None:
    # Output 1: people aged 65+ (indexes 0..19) and under 65 (100..129).
    first = _with_cells(_table(tmp_path / "r1", "age65.csv", {"65+": 20, "under65": 30}),
                        {"65+": range(0, 20), "under65": range(100, 130)}, suffix)
    # Output 2: aged 66+ (0..16). Alone it passes (17 > 5); against output 1 the difference
    # is the 3 people aged exactly 65 (17, 18, 19).
    second = _with_cells(_table(tmp_path / "r2", "age66.csv", {"66+": 17, "under66": 33}),
                         {"66+": range(0, 17), "under66": [17, 18, 19, *range(100, 130)]},
                         suffix)
    code1 = _submit(enclave_project, [first])
    _approve(enclave_project, code1)
    store = enclave_project.projects_dir / PROJECT / "differencing"
    assert list(store.glob("*.cells"))  # released cells entered the history

    code2 = _submit(enclave_project, [second])
    with session_scope(enclave_project) as session:
        request = get_request(session, code2)
        assert request.status == Status.BLOCKED
        report = json.loads(request.check_report)
    diffs = [f for f in report["findings"] if f["rule"] == "differencing"]
    assert diffs, report
    hit = next(f for f in diffs if f["location"] == "cell [group=66+]"
               and "group=65+" in f["detail"])
    assert hit["file"] == f"{code2}/age66" or hit["file"].startswith(code2)
    assert f"{code1}/" in hit["detail"] and "3 person(s)" in hit["detail"]
    # The same table without a history (first output never released) would pass alone.
    assert all(f["rule"] == "differencing" for f in report["findings"])


def test_differencing_safe_sequence_passes(enclave_project: Settings, tmp_path: Path) -> None:
    first = _with_cells(_table(tmp_path / "r1", "sex.csv", {"F": 25, "M": 25}),
                        {"F": range(0, 25), "M": range(25, 50)}, ".cells.parquet")
    # Age groups cutting across sex: every overlap and difference is at least 10 people.
    second = _with_cells(_table(tmp_path / "r2", "age.csv", {"young": 24, "old": 26}),
                         {"young": [*range(0, 12), *range(25, 37)],
                          "old": [*range(12, 25), *range(37, 50)]}, ".cells.parquet")
    code1 = _submit(enclave_project, [first])
    _approve(enclave_project, code1)
    code2 = _submit(enclave_project, [second])
    with session_scope(enclave_project) as session:
        assert get_request(session, code2).status == Status.QUEUED
    _approve(enclave_project, code2)
    with session_scope(enclave_project) as session:
        assert get_request(session, code2).status == Status.RELEASED


def test_cells_sidecar_round_trip_and_errors(tmp_path: Path) -> None:
    from disclosure_review.cells import CellsSidecarError

    cells = [CellMembership("t", "a=1", "institution", BitMap([1, 5, 9]))]
    for suffix in (".cells.parquet", ".cells.json"):
        path = write_cells(tmp_path / f"t.csv{suffix}", cells)
        (back,) = read_cells(path)
        assert back.members == BitMap([1, 5, 9]) and back.unit_kind == "institution"
    bad = tmp_path / "u.csv.cells.json"
    bad.write_text(json.dumps({"cells": [{"output_id": "u", "cell": "x", "unit_kind": "dog",
                                          "members": ""}]}))
    with pytest.raises(CellsSidecarError, match="cell 0: unit_kind 'dog'"):
        read_cells(bad)


# -- project context ---------------------------------------------------------------------------
def test_resolve_project_context(enclave_project: Settings) -> None:
    with pytest.raises(UnknownProjectError, match="P1999-0001"):
        resolve_project_context("P1999-0001", settings=enclave_project)
    context = resolve_project_context(PROJECT, settings=enclave_project)
    assert context.project_id == PROJECT
    assert context.differencing_store == enclave_project.projects_dir / PROJECT / "differencing"
    token = "Ab3dEf9hIjKlMnOpQr_tU-"
    assert context.pseudonym_pattern.fullmatch(token)
    # No registry yet: the shape decides (mixed case and digits), plain words do not.
    assert context.is_pseudonym(token)
    assert not context.is_pseudonym("calculate_mean_values_")
    assert not context.is_pseudonym("short")
    import polars as pl

    folder = enclave_project.projects_dir / PROJECT
    folder.mkdir(parents=True)
    pl.DataFrame({"pseudonym": ["Zz9yXw8vUt7sRq6pOn5m_L"]}).write_parquet(
        folder / PSEUDONYM_REGISTRY)
    context = resolve_project_context(PROJECT, settings=enclave_project)
    assert context.is_pseudonym("Zz9yXw8vUt7sRq6pOn5m_L")
    assert not context.is_pseudonym(token)  # registry known: only real pseudonyms count


def test_project_pseudonym_in_an_output_blocks_the_request(enclave_project: Settings,
                                                          tmp_path: Path) -> None:
    import polars as pl

    folder = enclave_project.projects_dir / PROJECT
    folder.mkdir(parents=True)
    pl.DataFrame({"pseudonym": ["Zz9yXw8vUt7sRq6pOn5m_L"]}).write_parquet(
        folder / PSEUDONYM_REGISTRY)
    note = tmp_path / "notes.md"
    note.write_text("Outlier patient Zz9yXw8vUt7sRq6pOn5m_L had 40 visits.\n")
    code = _submit(enclave_project, [note])
    with session_scope(enclave_project) as session:
        request = get_request(session, code)
        assert request.status == Status.BLOCKED
        assert "PROJECT_PSEUDONYM" in request.check_report or "pseudonym" in request.check_report
