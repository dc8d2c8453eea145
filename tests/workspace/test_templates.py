"""Templates: copied without overwriting; each runs end to end against the demo project
(nbclient, real kernel, the export service on its socket)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from sqlalchemy import select
from ws_helpers import PROJECT

from enclave.config import packaged_templates_dir
from enclave.workspace.templates import copy_templates, prepare_workspace

TEMPLATES = sorted(p.name for p in packaged_templates_dir().glob("*.ipynb"))


def test_five_templates_are_valid_notebooks():
    assert len(TEMPLATES) == 5
    for name in TEMPLATES:
        nbformat.validate(nbformat.read(packaged_templates_dir() / name, as_version=4))


def test_copy_templates_does_not_overwrite(tmp_path):
    mine = tmp_path / TEMPLATES[0]
    mine.write_text("my edited notebook", encoding="utf-8")
    copied = copy_templates(tmp_path)
    assert sorted(p.name for p in copied) == TEMPLATES[1:]
    assert mine.read_text(encoding="utf-8") == "my edited notebook"
    assert copy_templates(tmp_path) == []


def test_prepare_workspace_layout(settings):
    ws = prepare_workspace(settings, PROJECT, "rex")
    assert ws == settings.projects_dir / PROJECT / "scratch" / "rex"
    assert (ws / "outputs").is_dir()
    assert (ws / "extract").is_symlink()
    assert (ws / "extract").resolve() == (settings.projects_dir / PROJECT / "extract").resolve()
    assert sorted(p.name for p in ws.glob("*.ipynb")) == TEMPLATES
    assert prepare_workspace(settings, PROJECT, "rex") == ws  # idempotent


def _run(workspace: Path, name: str) -> nbformat.NotebookNode:
    book = nbformat.read(workspace / name, as_version=4)
    NotebookClient(book, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(workspace)}}).execute()
    return book


def _result(book: nbformat.NotebookNode) -> str:
    last = [c for c in book.cells if c.cell_type == "code"][-1]
    return "".join(o.get("data", {}).get("text/plain", "") + o.get("text", "")
                   for o in last.outputs)


@pytest.mark.slow
def test_templates_run_end_to_end(toolkit_env, export_service):
    settings = toolkit_env
    workspace = settings.projects_dir / PROJECT / "scratch" / "rex"
    books = {name: _run(workspace, name) for name in TEMPLATES}

    assert "H_NHI_OPDTE" in _result(books["01_getting_started.ipynb"])
    assert (workspace / "cohort_dm.parquet").is_file()  # 02 kept its cohort in the workspace
    assert _result(books["03_descriptive_table.ipynb"]).strip() == "'pass'"
    outputs = workspace / "outputs"
    assert (outputs / "dm_age_sex_2021.csv.cells.parquet").is_file()
    assert _result(books["04_regression_safe_output.ipynb"]).strip() in {"'pass'", "'review'"}
    assert not (outputs / "dm_points_ols_2021.csv.cells.parquet").exists()

    from enclave.state.db import session_scope
    from enclave.state.models import ExportRequest

    with session_scope(settings) as session:
        requests = session.scalars(select(ExportRequest)).all()
        assert [(r.author, r.project_code, r.status) for r in requests] == [
            ("rex", PROJECT, "queued")]
        assert [f.name for f in requests[0].files] == ["dm_sex_2020.csv"]
        assert requests[0].files[0].cells_name == "dm_sex_2020.csv.cells.parquet"
        code = requests[0].code
    assert code in _result(books["05_request_export.ipynb"])
    report = json.loads((settings.home / "exports" / code / "check_report.json").read_text())
    assert report["verdict"] == "pass"
