"""``enclave export check``: exit codes, JSON contract, policy override, project hook."""

import json

import pytest
from typer.testing import CliRunner

import enclave.cli.export_cmd  # noqa: F401  registers the sub-app
from disclosure_review.errors import EmptyTableError, UnknownProjectError
from enclave.cli._app import app
from enclave.errors import NotInitialisedError

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["export", "check", *args])


@pytest.fixture
def files(tmp_path):
    (tmp_path / "pass.csv").write_text("g,n\na,6\nb,60\n")
    (tmp_path / "fail.csv").write_text("g,n\na,5\nb,60\n")
    (tmp_path / "review.csv").write_text("g,n\na,0\nb,60\n")
    (tmp_path / "empty.csv").write_text("g,n\n")
    return tmp_path


def test_exit_codes(files):
    assert run(str(files / "pass.csv")).exit_code == 0
    assert run(str(files / "fail.csv")).exit_code == 1
    assert run(str(files / "review.csv")).exit_code == 3
    # worst finding wins across files
    assert run(str(files / "review.csv"), str(files / "fail.csv")).exit_code == 1


def test_json_contract(files):
    result = run(str(files / "fail.csv"), "--json")
    doc = json.loads(result.stdout)
    assert set(doc) == {"verdict", "policy", "findings"}
    assert doc["verdict"] == "fail" and doc["policy"] == "default"
    assert doc["findings"] == [{
        "rule": "count_threshold", "severity": "fail", "file": str(files / "fail.csv"),
        "location": "row[g=a] column 'n'", "detail": doc["findings"][0]["detail"],
    }]


def test_policy_override_is_named_in_outcome(files):
    (files / "loose.yaml").write_text("threshold: 4\n")
    result = run(str(files / "fail.csv"), "--policy", str(files / "loose.yaml"), "--json")
    doc = json.loads(result.stdout)
    assert result.exit_code == 0 and doc["verdict"] == "pass"
    assert "loose.yaml" in doc["policy"] and "threshold" in doc["policy"]


def test_plain_output_shows_locations(files):
    result = runner.invoke(app, ["export", "check", str(files / "fail.csv")],
                           env={"COLUMNS": "250"})
    assert "row[g=a] column 'n'" in result.stdout and "verdict: fail" in result.stdout


def test_input_errors_map_to_exit_code_2(files):
    result = run(str(files / "empty.csv"))
    assert isinstance(result.exception, EmptyTableError)
    assert result.exception.exit_code == 2
    # No enclave home: the project cannot be looked up at all (exit 2, names the home).
    result = run(str(files / "pass.csv"), "--project", "P-404")
    assert isinstance(result.exception, NotInitialisedError)
    assert result.exception.exit_code == 2
    assert run().exit_code == 2  # usage error: no PATH


def test_unknown_project_is_refused(files, settings):
    result = run(str(files / "pass.csv"), "--project", "P-404")
    assert isinstance(result.exception, UnknownProjectError)
    assert result.exception.exit_code == 2 and "P-404" in str(result.exception)
