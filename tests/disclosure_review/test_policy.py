import json

import pytest

from disclosure_review.errors import DisclosurePolicyError
from disclosure_review.policy import load_policy


def test_defaults_follow_design_section_6():
    p = load_policy()
    assert p.threshold == 5 and p.zero_cells == "review" and p.suppression_marks == "fail"
    assert (p.p_percent, p.nk_n, p.nk_k, p.min_residual_df) == (10, 2, 85, 10)
    assert p.two_reviewers is False
    assert p.label == "default"


def test_override_from_json_changes_keys_and_label(tmp_path):
    o = tmp_path / "strict.json"
    o.write_text(json.dumps({"threshold": 10, "rules_by_kind": {"figure": []}}))
    p = load_policy(override=o)
    assert p.threshold == 10
    assert p.rules_by_kind["figure"] == [] and "count_threshold" in p.rules_by_kind["frequency"]
    assert p.label.startswith("default + override") and "threshold" in p.label


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("thresold: 3\n", "thresold"),
        ("threshold: -1\n", "threshold"),
        ("suppression_marks: maybe\n", "suppression_marks"),
        ("rules_by_kind: {text: [no_such_rule]}\n", "no_such_rule"),
        ("- a list\n", "mapping"),
    ],
)
def test_bad_override_names_the_key(tmp_path, text, needle):
    o = tmp_path / "bad.yaml"
    o.write_text(text)
    with pytest.raises(DisclosurePolicyError, match=needle):
        load_policy(override=o)
