import pytest

from disclosure_review.model import CheckReport, Finding, Verdict


def _f(sev: Verdict) -> Finding:
    return Finding("r", sev, "a.csv", "row 1 column 'n'", "d")


def test_worst_verdict_wins_and_exit_codes():
    assert CheckReport((), "default").verdict is Verdict.PASS
    assert CheckReport((), "default").exit_code == 0
    assert CheckReport((_f(Verdict.REVIEW),), "default").exit_code == 3
    report = CheckReport((_f(Verdict.REVIEW), _f(Verdict.FAIL)), "default")
    assert report.verdict is Verdict.FAIL
    assert report.exit_code == 1


def test_json_shape_is_exactly_the_contract():
    d = CheckReport((_f(Verdict.FAIL),), "default").to_dict()
    assert set(d) == {"verdict", "policy", "findings"}
    assert set(d["findings"][0]) == {"rule", "severity", "file", "location", "detail"}
    assert d["verdict"] == "fail" and d["findings"][0]["severity"] == "fail"


def test_finding_cannot_be_a_pass():
    with pytest.raises(ValueError):
        _f(Verdict.PASS)
