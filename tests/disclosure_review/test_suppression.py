"""Rule 4: masked cells and their recoverability by linear programming."""

import numpy as np
from dr_helpers import rules_of

from disclosure_review.suppression import feasible_ranges, margin_constraints, mask_bounds

RECOVERABLE = "region,A,B,Total\nnorth,*,10,13\nsouth,20,30,50\nTotal,23,40,63\n"
PROTECTED = "grp,A,B,Total\nr1,*,*,20\nr2,*,*,20\nTotal,20,20,40\n"


def test_masked_cell_fails_by_default_with_collapse_advice(check):
    r = check("p.csv", PROTECTED)
    assert r.verdict.value == "fail"
    assert {f.rule for f in r.findings} == {"masked_cells"}
    assert len(r.findings) == 4 and "collapse categories" in r.findings[0].detail


def test_policy_review_and_allow(check):
    assert check("p.csv", PROTECTED, overrides="suppression_marks: review\n").verdict.value \
        == "review"
    # Proper secondary suppression: every masked cell ranges over 0..20 -> passes with allow.
    assert check("p.csv", PROTECTED, overrides="suppression_marks: allow\n").verdict.value \
        == "pass"


def test_recoverable_cell_fails_even_when_marks_are_allowed(check):
    r = check("r.csv", RECOVERABLE, overrides="suppression_marks: allow\n")
    assert rules_of(r) == [("suppression_recovery", "row[region=north] column 'A'")]
    assert "fix it at 3" in r.findings[0].detail


def test_lp_ranges_hand_computed():
    # 2x2 interior + margins, one masked cell: x = 13 - 10 = 3 exactly.
    labels = [("n", "A"), ("n", "B"), ("n", "T"), ("s", "A"), ("s", "B"), ("s", "T"),
              ("T", "A"), ("T", "B"), ("T", "T")]
    is_total = [(a == "T", b == "T") for a, b in labels]
    cons = margin_constraints(labels, is_total)
    values = np.array([np.nan, 10, 13, 20, 30, 50, 23, 40, 63], dtype=float)
    ranges = feasible_ranges(values, np.isnan(values), cons)
    assert [(r.low, r.high, r.recoverable) for r in ranges] == [(3.0, 3.0, True)]


def test_two_masked_per_row_and_column_can_still_be_recovered():
    # A pattern check ("two masks per row and column") would call this safe, but the
    # column total of A is 9 and B's masked cells are forced by the row totals:
    # rows r1: x1 + y1 = 12, r2: x2 + y2 = 7; columns A: x1 + x2 = 9, B: y1 + y2 = 10.
    # x2 = 7 - y2 and y2 <= 7 ... only the band check decides; here ranges are wide.
    labels = [("r1", "A"), ("r1", "B"), ("r1", "T"), ("r2", "A"), ("r2", "B"), ("r2", "T"),
              ("T", "A"), ("T", "B"), ("T", "T")]
    is_total = [(a == "T", b == "T") for a, b in labels]
    values = np.array([np.nan, np.nan, 12, np.nan, np.nan, 7, 9, 10, 19], dtype=float)
    ranges = feasible_ranges(values, np.isnan(values), margin_constraints(labels, is_total))
    # x1 in [2, 9], y1 in [3, 10], x2 in [0, 7], y2 in [0, 7]: protected.
    assert [(r.low, r.high) for r in ranges] == [(2, 9), (3, 10), (0, 7), (0, 7)]
    assert not any(r.recoverable for r in ranges)


def test_mask_bounds_and_small_band_is_recoverable():
    assert mask_bounds("<6") == (0.0, 5.0)
    assert mask_bounds("1-5") == (1.0, 5.0)
    assert mask_bounds("*")[0] == 0.0
    # r1: x + y = 8 with both "<6": x, y in [3, 5] -> inside the 1..5 band -> recoverable.
    labels = [("r1", "A"), ("r1", "B"), ("r1", "T")]
    is_total = [(False, False), (False, False), (False, True)]
    values = np.array([np.nan, np.nan, 8.0])
    ranges = feasible_ranges(values, np.isnan(values), margin_constraints(labels, is_total),
                             bounds=[mask_bounds("<6"), mask_bounds("<6")])
    assert [(r.low, r.high, r.recoverable) for r in ranges] == [(3, 5, True), (3, 5, True)]


def test_long_format_with_total_rows(check):
    text = "sex,age,n\nF,<65,40\nF,65+,*\nF,Total,43\nM,<65,30\nM,65+,20\nM,Total,50\n"
    r = check("l.csv", text, overrides="suppression_marks: allow\n")
    assert rules_of(r) == [("suppression_recovery", "row[sex=F, age=65+] column 'n'")]


def test_inconsistent_totals_go_to_review(check):
    r = check("i.csv", "g,n\na,*\nb,50\nTotal,40\n", overrides="suppression_marks: allow\n")
    assert [(f.rule, f.severity.value) for f in r.findings] == [
        ("suppression_recovery", "review")
    ]
