"""``enclave catalog list/show/validate`` through Typer's CliRunner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

import enclave.cli.catalog_cmd  # noqa: F401  (registers the sub-app)
from catalog import PACKAGED_ROOT
from enclave.cli._app import app

runner = CliRunner()


def test_list_json() -> None:
    res = runner.invoke(app, ["catalog", "list", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert rows[0]["name"] == "H_NHI_DRUG"
    opdte = next(r for r in rows if r["name"] == "H_NHI_OPDTE")
    assert opdte["kind"] == "claims" and opdte["label_zh"] == "門診處方及治療明細檔"
    assert opdte["columns"] == 35 and opdte["classification"] == "B"
    res = runner.invoke(app, ["catalog", "list"])
    assert res.exit_code == 0 and "H_NHI_ENROL" in res.output


def test_show() -> None:
    res = runner.invoke(app, ["catalog", "show", "H_NHI_ENROL", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    cols = {c["name"]: c for c in doc["columns"]}
    assert cols["UNIT_ID"]["identifier"] == "insured_unit"
    assert cols["ID_S"]["allowed_values"] == ["1", "2", "9"]
    assert cols["ID_S"]["classification"] == "B" and cols["NAME"]["role"] == "drop"
    res = runner.invoke(
        app, ["catalog", "show", "H_NHI_OPDTO", "--lang", "zh"], env={"COLUMNS": "250"}
    )
    assert res.exit_code == 0, res.output
    assert "醫令類別" in res.output and "H_NHI_OPDTE" in res.output and "[A-Z0-9]" in res.output
    res = runner.invoke(app, ["catalog", "show", "H_NHI_NOPE"])
    assert res.exit_code != 0


def test_validate(tmp_path: Path) -> None:
    res = runner.invoke(app, ["catalog", "validate"])
    assert res.exit_code == 0 and res.output.startswith("OK")
    root = tmp_path / "cat"
    shutil.copytree(PACKAGED_ROOT / "files", root / "files")
    shutil.copytree(PACKAGED_ROOT / "codes", root / "codes")
    assert runner.invoke(app, ["catalog", "validate", str(root)]).exit_code == 0
    (root / "codes" / "sex.yaml").unlink()
    res = runner.invoke(app, ["catalog", "validate", str(root)])
    assert res.exit_code == 2
    assert "sex" in res.output and ".yaml" in res.output
