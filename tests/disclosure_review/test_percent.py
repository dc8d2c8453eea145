"""Rule 3: implied numerators and complements of percentages."""

from dr_helpers import rules_of


def test_implied_numerator_and_complement_hand_computed(check):
    # a: 5% of 100 = 5 -> numerator fails; b: 94% -> complement 6 passes
    # c: 96% -> complement 4 fails;         d: 3% of 200 = 6 -> passes
    text = "g,denominator,pct\na,100,5\nb,100,94\nc,100,96\nd,200,3\n"
    r = check("p.csv", text)
    assert rules_of(r) == [
        ("percent_numerators", "row[g=a] column 'pct'"),
        ("percent_numerators", "row[g=c] column 'pct'"),
    ]
    assert "numerator is 5 of 100" in r.findings[0].detail
    assert "complement is 4 of 100" in r.findings[1].detail


def test_fractions_are_recognised(check):
    r = check("p.csv", "g,denominator,proportion\na,100,0.05\nb,100,0.5\n")
    assert rules_of(r) == [("percent_numerators", "row[g=a] column 'proportion'")]


def test_column_percentages_use_the_column_total(check):
    assert check("ok.csv", "g,n,pct\na,94,94\nb,6,6\n").verdict.value == "pass"
    r = check("bad.csv", "g,n,pct\na,96,96\nb,4,4\n")
    assert ("percent_numerators", "row[g=a] column 'pct'") in rules_of(r, "fail")


def test_percent_without_denominator_goes_to_review(check):
    r = check("r.csv", "g,pct\na,40\nb,30\n")
    assert r.verdict.value == "review"
    assert [f.rule for f in r.findings] == ["percent_numerators"]


def test_manifest_declares_the_denominator(tmp_path):
    import json

    from disclosure_review.checker import check_paths

    (tmp_path / "t.csv").write_text("g,base,share\na,50,10\n")
    (tmp_path / "m.json").write_text(json.dumps({"files": [
        {"path": "t.csv", "kind": "percent", "percent": ["share"], "denominator": "base",
         "dimensions": ["g"], "counts": ["base"]},
    ]}))
    r = check_paths([tmp_path / "t.csv"], manifest=tmp_path / "m.json")
    assert rules_of(r) == [("percent_numerators", "row[g=a] column 'share'")]
    assert "numerator is 5 of 50" in r.findings[0].detail
