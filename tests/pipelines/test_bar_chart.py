"""The representativeness charts: bars drawn to scale, ticks that cover the data, bad input refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageColor

from pipelines.provision.bar_chart import SERIES_COLOURS, ChartError, grouped_bar_chart, nice_ticks


def _bar_lengths(path, colour: str) -> list[int]:
    """Per horizontal band of ``colour``, its length in pixels (the legend swatch is the first band)."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    hit = np.all(pixels == np.array(ImageColor.getrgb(colour), dtype=np.uint8), axis=2)
    per_row = hit.sum(axis=1)
    bands, current = [], 0
    for count in per_row:
        if count:
            current = max(current, int(count))
        elif current:
            bands.append(current)
            current = 0
    if current:
        bands.append(current)
    return bands


@pytest.mark.parametrize("largest", [0.004, 0.7, 3, 9.99, 10, 26.1, 61, 100, 12345])
def test_ticks_start_at_zero_cover_the_largest_value_with_a_round_step(largest):
    ticks = nice_ticks(largest)
    assert ticks[0] == 0 and ticks[-1] >= largest
    step = ticks[1] - ticks[0]
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5))
    assert ticks[-2] < largest  # no empty tick interval beyond the data
    assert 3 <= len(ticks) <= 12


def test_nothing_to_show_still_gets_an_axis():
    assert nice_ticks(0) == [0.0, 1.0]


def test_bar_lengths_are_proportional_to_the_values(tmp_path):
    path = tmp_path / "chart.png"
    grouped_bar_chart(
        path,
        title="t",
        categories=["a", "b", "c"],
        series=[("first", [10.0, 20.0, 5.0]), ("second", [40.0, 0.0, 20.0])],
        axis_label="x",
    )
    first = _bar_lengths(path, SERIES_COLOURS[0])
    second = _bar_lengths(path, SERIES_COLOURS[1])
    swatch = first[0]
    assert second[0] == swatch  # the legend's swatches
    bars_first, bars_second = first[1:], second[1:]
    assert len(bars_first) == 3 and len(bars_second) == 2  # a zero value draws no bar
    unit = bars_second[0] / 40  # pixels per unit, from the longest bar
    for got, value in zip(bars_first, [10, 20, 5], strict=True):
        assert abs(got - value * unit) <= 1.5
    assert abs(bars_second[1] - 20 * unit) <= 1.5


def test_same_numbers_give_the_same_bytes(tmp_path):
    args = dict(
        title="sex",
        categories=["1", "2", "unknown"],
        series=[("all", [49.5, 50.4, 0.1])],
        axis_label="share of people (%)",
    )
    grouped_bar_chart(tmp_path / "a.png", **args)
    grouped_bar_chart(tmp_path / "b.png", **args)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert Image.open(tmp_path / "a.png").format == "PNG"


def test_more_categories_make_a_taller_chart(tmp_path):
    for n in (2, 20):
        grouped_bar_chart(
            tmp_path / f"{n}.png",
            title="t",
            categories=[f"c{i}" for i in range(n)],
            series=[("all", [1.0] * n)],
            axis_label="x",
        )
    assert Image.open(tmp_path / "20.png").height > Image.open(tmp_path / "2.png").height + 18 * 9


@pytest.mark.parametrize(
    ("series", "message"),
    [
        ([("all", [1.0])], "1 values for 2 categories"),
        ([("all", [1.0, float("nan")])], "not finite"),
        ([("all", [1.0, -0.5])], "negative"),
        ([], "between 1 and"),
    ],
)
def test_inconsistent_input_is_refused_with_the_reason(tmp_path, series, message):
    with pytest.raises(ChartError, match=message):
        grouped_bar_chart(tmp_path / "x.png", title="t", categories=["a", "b"], series=series, axis_label="x")
    assert not (tmp_path / "x.png").exists()
