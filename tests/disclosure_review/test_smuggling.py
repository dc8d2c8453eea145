"""Rule 7 on outputs: identifiers in tables/text/code, project pseudonyms, blobs."""

import base64
import re
from dataclasses import dataclass
from pathlib import Path

from dr_helpers import rules_of

from disclosure_review.checker import check_paths
from disclosure_review.context import PSEUDONYM_TOKEN, ProjectContext

KNOWN = "Qk1hY2hpbmVQc2V1ZG9ueW0"[:22]


@dataclass
class FakeProject:
    project_id: str = "P2026-001"
    pseudonym_pattern: re.Pattern[str] = PSEUDONYM_TOKEN
    differencing_store: Path | None = None

    def is_pseudonym(self, token: str) -> bool:
        return token == KNOWN


def test_fake_context_satisfies_protocol():
    assert isinstance(FakeProject(), ProjectContext)


def test_project_pseudonym_in_text_fails_only_in_project_context(check):
    text = f"Result for {KNOWN}: improved\nother token AAAAAAAAAAAAAAAAAAAAAB\n"
    assert check("notes.txt", text).verdict.value == "pass"
    r = check("notes.txt", text, project=FakeProject())
    assert rules_of(r) == [("identifiers", "line 1")]
    assert "P2026-001" in r.findings[0].detail
    assert KNOWN not in r.findings[0].detail  # never echo the identifier


def test_identifier_in_table_cell_is_located(check):
    r = check("t.csv", "label,n\n身分證 A123456789,10\nother,12\n")
    assert rules_of(r) == [("identifiers", "row[label=身分證 A123456789] column 'label'")]


def test_code_with_blob_and_literal_list_goes_to_review(check):
    blob = base64.b64encode(bytes(range(256)) * 2).decode()
    numbers = ", ".join(str(i) for i in range(80))
    code = f"x = 1\ndata = '{blob}'\nvals = [{numbers}]\n"
    r = check("a.py", code)
    assert r.verdict.value == "review"
    assert rules_of(r) == [("embedded_literals", "line 2"), ("embedded_literals", "line 3")]


def test_phone_in_sql_comment_fails(check):
    r = check("q.sql", "-- contact 0912-345-678\nselect count(*) from t;\n")
    assert rules_of(r, "fail") == [("identifiers", "line 1")]


def test_notebook_code_outputs_and_images(tmp_path):
    import io
    import json

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    nb = {"cells": [
        {"cell_type": "code", "source": ["print('hi')\n"], "outputs": [
            {"output_type": "stream", "text": ["姓名：陳大文\n"]},
            {"output_type": "display_data",
             "data": {"image/png": base64.b64encode(buf.getvalue()).decode()}},
        ]},
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "a.ipynb"
    path.write_text(json.dumps(nb, ensure_ascii=False))
    r = check_paths([path])
    assert rules_of(r) == [
        ("identifiers", "cell 1 output 1: line 1"),
        ("figure_review", "cell 1 output 2: whole figure"),
    ]
    assert r.verdict.value == "fail"
