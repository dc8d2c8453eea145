"""Rule 8: figures go to review; release re-encodes them without metadata or trailers."""

import pytest
from PIL import Image, PngImagePlugin

from disclosure_review.checker import check_paths
from disclosure_review.errors import UnreadableOutputError
from disclosure_review.figures import reencode_image
from disclosure_review.policy import load_policy


def test_figure_always_reviewed_and_policy_can_fail_it(tmp_path):
    Image.new("RGB", (8, 8), "white").save(tmp_path / "f.png")
    assert check_paths([tmp_path / "f.png"]).verdict.value == "review"
    (tmp_path / "strict.yaml").write_text("figures: fail\n")
    strict = load_policy(override=tmp_path / "strict.yaml")
    assert check_paths([tmp_path / "f.png"], policy=strict).verdict.value == "fail"


def test_reencode_strips_metadata_and_appended_bytes(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("secret", "A123456789")
    src = tmp_path / "in.png"
    Image.new("RGB", (6, 4), (10, 20, 30)).save(src, pnginfo=info)
    src.write_bytes(src.read_bytes() + b"SMUGGLED-ROWS")
    out = tmp_path / "out.png"
    reencode_image(src, out)
    data = out.read_bytes()
    assert b"SMUGGLED" not in data and b"A123456789" not in data
    with Image.open(out) as image:
        assert image.size == (6, 4) and "secret" not in image.info
        assert image.getpixel((0, 0)) == (10, 20, 30)


def test_reencode_refuses_other_targets(tmp_path):
    Image.new("RGB", (2, 2)).save(tmp_path / "a.png")
    with pytest.raises(UnreadableOutputError):
        reencode_image(tmp_path / "a.png", tmp_path / "a.svg")
