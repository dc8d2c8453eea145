"""``enclave synth-source`` end to end through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from enclave.cli import _register, app

_register()


def test_synth_source_json(tmp_path: Path) -> None:
    out = tmp_path / "src"
    args = ["synth-source", str(out), "--people", "400", "--years", "2022..2023", "--seed", "9",
            "--defects", "0.01", "--encoding", "big5", "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"]["H_NHI_DRUGE_2023.csv"] > 0
    assert summary["defects"] > 0
    assert len(summary["paths"]) == 9 * 2
    assert (out / "ground_truth" / "defects.csv").exists()
    medfa = pl.read_csv(out / "H_NHI_MEDFA_2022.csv", infer_schema_length=0, encoding="utf8-lossy")
    assert medfa.height > 0
    text = (out / "H_NHI_MEDFA_2022.csv").read_bytes().decode("cp950")
    assert "醫" in text or "診所" in text


def test_synth_source_refuses_bad_years(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["synth-source", str(tmp_path), "--people", "10", "--years", "20x2", "--seed", "1"]
    )
    assert result.exit_code != 0
    assert "--years" in str(result.exception) + result.output
