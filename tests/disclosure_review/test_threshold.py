"""Rule 1: counts must be more than 5 (5 fails, 6 passes); zeros review; invalid counts fail."""

from dr_helpers import rules_of


def test_five_fails_six_passes(check):
    r = check("t.csv", "sex,age,n\nF,<65,6\nF,65+,5\nM,<65,100\nM,65+,7\n")
    assert r.verdict.value == "fail"
    assert rules_of(r) == [("count_threshold", "row[sex=F, age=65+] column 'n'")]


def test_one_fails_and_all_six_pass(check):
    assert check("a.csv", "g,n\na,6\nb,6\n").verdict.value == "pass"
    r = check("b.csv", "g,n\na,1\nb,60\n")
    assert rules_of(r, "fail") == [("count_threshold", "row[g=a] column 'n'")]


def test_zero_cell_goes_to_review_and_policy_can_fail_it(check):
    text = "g,n\na,0\nb,60\n"
    r = check("z.csv", text)
    assert r.verdict.value == "review"
    assert rules_of(r) == [("count_threshold", "row[g=a] column 'n'")]
    assert check("z2.csv", text, overrides="zero_cells: fail\n").verdict.value == "fail"
    assert check("z3.csv", text, overrides="zero_cells: allow\n").verdict.value == "pass"


def test_negative_and_fractional_counts_are_invalid(check):
    r = check("i.csv", "g,n\na,-7\nb,7.5\nc,70\n")
    details = [f.detail for f in r.findings]
    assert len(details) == 2 and all(d.startswith("invalid count") for d in details)


def test_chinese_count_columns_and_big5(write):
    from disclosure_review.checker import check_paths

    path = write("zh.csv", "性別,年齡,人數,件數\n男,65+,12,3\n女,65+,40,50\n", encoding="cp950")
    r = check_paths([path])
    assert rules_of(r) == [("count_threshold", "row[性別=男, 年齡=65+] column '件數'")]


def test_institution_counts_have_their_own_threshold(check):
    r = check("h.csv", "region,n,家數\nnorth,100,3\n", overrides="institution_threshold: 2\n")
    assert r.verdict.value == "pass"
    r = check("h2.csv", "region,n,家數\nnorth,100,3\n")
    assert "institutions" in r.findings[0].detail


def test_wide_crosstab_unnamed_integer_columns_are_counts(check):
    r = check("w.csv", "age,F,M\n<65,30,4\n65+,20,9\n")
    assert rules_of(r) == [("count_threshold", "row[age=<65] column 'M'")]


def test_unknown_table_goes_to_review(check):
    r = check("u.csv", "label,comment\na,b\n")
    assert [f.rule for f in r.findings] == ["unknown_table"]
    assert r.verdict.value == "review"
