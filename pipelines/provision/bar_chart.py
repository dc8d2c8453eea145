"""Grouped horizontal bar charts as PNG, drawn with Pillow: the representativeness plots.

Every extract carries one small chart per dimension. matplotlib would draw them too, but its
import alone costs about 0.5 CPU-s in every provisioning run, more than the four charts are
worth on a two-core host where that CPU comes out of the extract's COPY. A chart here is a
title, a legend, one row per category (category text on the left, so long ICD-10 chapter
names need no rotation), one bar per series, and an x axis of rounded ticks with grid lines.
Output is deterministic: the same numbers give the same bytes (the manifest hashes them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SERIES_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")
_TEXT, _GRID, _AXIS = "#222222", "#dddddd", "#444444"
_PLOT_WIDTH = 480
_BAR, _GAP = 9, 8  # bar thickness and the space between categories, pixels
_PAD = 12
_MAX_LABEL = 48


class ChartError(ValueError):
    """The chart's input is inconsistent (series lengths, negative or non-finite values)."""


def nice_ticks(largest: float, *, target: int = 5) -> list[float]:
    """Ticks 0, s, 2s, ... covering ``largest``, with s one of 1, 2, 2.5, 5 times a power of ten."""
    if largest <= 0:
        return [0.0, 1.0]
    raw = largest / target
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    count = math.ceil(largest / step - 1e-9)
    return [round(i * step, 10) for i in range(count + 1)]


def _tick_text(value: float) -> str:
    return f"{value:g}"


def _label(text: str) -> str:
    return text if len(text) <= _MAX_LABEL else text[: _MAX_LABEL - 3] + "..."


def grouped_bar_chart(
    path: Path,
    *,
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    axis_label: str,
) -> None:
    """Write a PNG with one row per category and one bar per ``(name, values)`` series.

    Raises
    ------
    ChartError
        A series has a different length from ``categories``, more series than colours, or a
        negative, NaN or infinite value.
    """
    if not series or len(series) > len(SERIES_COLOURS):
        raise ChartError(f"{title}: between 1 and {len(SERIES_COLOURS)} series, got {len(series)}")
    for name, values in series:
        if len(values) != len(categories):
            raise ChartError(f"{title}: series {name!r} has {len(values)} values for {len(categories)} categories")
        bad = [v for v in values if not math.isfinite(v) or v < 0]
        if bad:
            raise ChartError(f"{title}: series {name!r} has a value that is negative or not finite ({bad[0]})")
    font = ImageFont.load_default(size=12)
    small = ImageFont.load_default(size=11)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def width(text: str, f: ImageFont.ImageFont | ImageFont.FreeTypeFont = font) -> int:
        return math.ceil(probe.textlength(text, font=f))

    line = 16
    labels = [_label(c) for c in categories]
    label_width = max((width(t, small) for t in labels), default=0)
    ticks = nice_ticks(max((v for _, values in series for v in values), default=0.0))
    top_value = ticks[-1]
    left = _PAD + label_width + 8
    title_h = line + 6
    legend_h = line + 4
    top = _PAD + title_h + legend_h + 6
    row = len(series) * _BAR + _GAP
    plot_h = max(row * len(categories), row)
    bottom_text = line * 2 + 4
    size = (left + _PLOT_WIDTH + _PAD + width(_tick_text(top_value), small) // 2, top + plot_h + bottom_text + _PAD)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)

    def x_of(value: float) -> int:
        return left + round(value / top_value * _PLOT_WIDTH)

    draw.text((size[0] // 2, _PAD), title, fill=_TEXT, font=font, anchor="ma")
    x = left
    for (name, _values), colour in zip(series, SERIES_COLOURS, strict=False):
        y = _PAD + title_h
        draw.rectangle((x, y + 3, x + 12, y + 12), fill=colour)
        draw.text((x + 16, y), name, fill=_TEXT, font=small)
        x += 16 + width(name, small) + 18
    for tick in ticks:
        gx = x_of(tick)
        draw.line((gx, top, gx, top + plot_h), fill=_GRID)
        draw.line((gx, top + plot_h, gx, top + plot_h + 4), fill=_AXIS)
        draw.text((gx, top + plot_h + 6), _tick_text(tick), fill=_TEXT, font=small, anchor="ma")
    for i, text in enumerate(labels):
        y0 = top + i * row + _GAP // 2
        draw.text((left - 8, y0 + len(series) * _BAR // 2), text, fill=_TEXT, font=small, anchor="rm")
        for j, ((_name, values), colour) in enumerate(zip(series, SERIES_COLOURS, strict=False)):
            end = x_of(values[i])
            if end > left:
                draw.rectangle((left, y0 + j * _BAR, end, y0 + (j + 1) * _BAR - 1), fill=colour)
    draw.line((left, top, left, top + plot_h), fill=_AXIS)
    draw.line((left, top + plot_h, left + _PLOT_WIDTH, top + plot_h), fill=_AXIS)
    draw.text((left + _PLOT_WIDTH // 2, top + plot_h + line + 8), axis_label, fill=_TEXT, font=font, anchor="ma")
    image.save(path, format="PNG")
