"""Rule 2: magnitude tables; counts behind values, extremes, p% and n,k dominance."""

from dr_helpers import rules_of


def test_value_resting_on_five_units_fails(check):
    r = check("m.csv", "g,n,mean_cost\na,5,100.5\nb,6,80.0\n")
    assert ("magnitude_counts", "row[g=a] column 'mean_cost'") in rules_of(r, "fail")
    assert ("magnitude_counts", "row[g=b] column 'mean_cost'") not in rules_of(r)


def test_values_without_count_go_to_review(check):
    r = check("m.csv", "g,mean_cost\na,100.5\nb,80.0\n")
    assert r.verdict.value == "review"
    assert [f.rule for f in r.findings] == ["magnitude_counts"]


def test_extremes_fail_over_small_groups_and_review_otherwise(check):
    r = check("x.csv", "g,n,max_cost\na,8,900\nb,50,1000\n")
    assert rules_of(r, "fail") == [("extremes", "row[g=a] column 'max_cost'")]
    r = check("y.csv", "g,n,max_cost\nb,50,1000\n")
    assert rules_of(r) == [("extremes", "column 'max_cost'")]
    assert r.verdict.value == "review"


def test_p_percent_and_nk_hand_computed(check):
    # north: rest = 1000-900-50 = 50 < 10% of 900 = 90 -> p% fails
    # south: rest 300 >= 40; top2 share 70% -> passes both
    # east:  rest 140 >= 50; top2 share 86% > 85% -> n,k fails
    # west:  rest 150 >= 45; top2 share exactly 85% -> passes (must exceed k)
    text = (
        "region,n,sum_cost,top1,top2\n"
        "north,10,1000,900,50\n"
        "south,10,1000,400,300\n"
        "east,10,1000,500,360\n"
        "west,10,1000,450,400\n"
    )
    r = check("d.csv", text)
    fails = rules_of(r, "fail")
    assert fails == [
        ("dominance", "row[region=north] column 'sum_cost'"),
        ("dominance", "row[region=east] column 'sum_cost'"),
    ]
    assert "p% rule" in r.findings[0].detail and "n,k rule" in r.findings[1].detail


def test_dominance_policy_is_data(check):
    text = "region,n,sum_cost,top1,top2\neast,10,1000,500,360\n"
    assert check("d.csv", text, overrides="nk_k: 90\n").verdict.value == "pass"


def test_dominance_uses_mean_times_count_when_no_sum(check):
    # total = 100 * 10 = 1000; rest = 1000-950-20 = 30 < 95 -> p% fails
    r = check("d.csv", "g,n,mean_cost,top1,top2\na,10,100,950,20\n")
    assert r.findings[0].rule == "dominance"
    assert "mean_cost × n" in r.findings[0].location
