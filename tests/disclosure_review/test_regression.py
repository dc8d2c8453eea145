"""Rule 5: residual degrees of freedom; no per-record residuals or predictions."""

import json

from dr_helpers import rules_of

from disclosure_review.checker import check_paths

COEFS = "term,coef,std_err,p_value,df_resid\nintercept,1.2,0.3,0.01,{df}\nage,0.05,0.01,0.02,{df}\n"


def test_residual_df_must_exceed_the_minimum(check):
    assert check("r.csv", COEFS.format(df=11)).verdict.value == "pass"
    r = check("r.csv", COEFS.format(df=10))
    assert rules_of(r) == [("residual_df", "column 'df_resid'")]


def test_unknown_df_goes_to_review(check):
    r = check("r.csv", "term,coef,std_err\nintercept,1.2,0.3\n")
    assert [(f.rule, f.severity.value) for f in r.findings] == [("residual_df", "review")]


def test_df_from_manifest(tmp_path):
    (tmp_path / "m.csv").write_text("term,estimate,se\nx,1,0.1\n")
    (tmp_path / "man.yaml").write_text(
        "files:\n  - {path: m.csv, kind: regression, residual_df: '8'}\n"
    )
    r = check_paths([tmp_path / "m.csv"], manifest=tmp_path / "man.yaml")
    assert [f.rule for f in r.findings] == ["residual_df"]
    assert "8" in r.findings[0].detail


def test_per_record_predictions_fail(check):
    r = check("p.csv", "g,n,predicted\na,10,0.3\nb,12,0.5\n")
    assert ("per_record_outputs", "column 'predicted'") in rules_of(r, "fail")


def test_statsmodels_summary_row(tmp_path):
    (tmp_path / "s.csv").write_text("stat,value\nDf Residuals,4\nR-squared,0.5\n")
    (tmp_path / "m.json").write_text(json.dumps(
        {"files": [{"path": "s.csv", "kind": "regression"}]}))
    r = check_paths([tmp_path / "s.csv"], manifest=tmp_path / "m.json")
    assert rules_of(r) == [("residual_df", "row 'Df Residuals'")]
