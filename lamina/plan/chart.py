"""Concurrency over time against the limits: panels drawn as a PNG (Pillow) and as SVG
(for the HTML page), from one layout.

The y-axis is scaled to the data, not to the limits: a function that peaks at 11 under an
account limit of 1,000 is drawn 11 high. A limit near the data (no more than twice the
axis the data alone would get) is drawn as a labelled dashed line and the axis grows to
hold it; one further up is marked at the top edge with its label and an arrow. The
console's live chart (lamina/console/static/console.js, `axisFor`) follows the same rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

RGB = tuple[int, int, int]
BLUE: RGB = (37, 99, 235)  # concurrency (the console's colour too)
TEAL: RGB = (8, 145, 178)  # unreserved in use
RED: RGB = (220, 38, 38)  # account limit
ORANGE: RGB = (234, 88, 12)  # reserved
GREEN: RGB = (21, 128, 61)  # provisioned
PURPLE: RGB = (124, 58, 237)  # unreserved pool
GRID: RGB = (226, 232, 240)
INK: RGB = (30, 41, 59)
MUTED: RGB = (100, 116, 139)

WIDTH = 1200
PANEL_HEIGHT = 250
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 210, 34, 30
LIMIT_REACH = 2.0  # a limit within this many times the data's axis is drawn in scale


@dataclass
class Series:
    label: str
    color: RGB
    values: list[int]  # one per bucket: the peak within it


@dataclass
class Limit:
    label: str
    value: float
    color: RGB


@dataclass
class Panel:
    title: str
    series: list[Series]
    limits: list[Limit]
    bucket_s: float
    start_s: float = 0.0


@dataclass
class Axis:
    top: float  # the y-axis maximum
    shown: list[Limit] = field(default_factory=list)  # drawn in scale
    above: list[Limit] = field(default_factory=list)  # marked at the top edge


def nice(value: float) -> float:
    """The next 'round' number at or above `value` (1, 2, 2.5, 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * power >= value - 1e-9:
            return float(step * power)
    return float(10 * power)


def axis_for(data_max: float, limits: list[Limit]) -> Axis:
    base = max(data_max, 1.0) * 1.15
    shown = [limit for limit in limits if limit.value <= base * LIMIT_REACH]
    above = [limit for limit in limits if limit.value > base * LIMIT_REACH]
    top = max([base, *(limit.value * 1.08 for limit in shown)])
    return Axis(nice(top), shown, above)


def bucketed(per_second: list[int], width: int) -> tuple[list[int], float]:
    """Per-second peaks as at most `width` buckets (each the peak within it)."""
    if not per_second:
        return [0], 1.0
    size = max(1, math.ceil(len(per_second) / width))
    return [max(per_second[i : i + size]) for i in range(0, len(per_second), size)], float(size)


def dense(secs: list[int], peaks: list[int], seconds: int) -> list[int]:
    values = [0] * seconds
    for second, peak in zip(secs, peaks, strict=True):
        if 0 <= second < seconds:
            values[second] = peak
    return values


def clock(seconds: float) -> str:
    whole = int(seconds)
    if whole >= 86400:
        return f"{whole // 86400}d {whole % 86400 // 3600:02d}:{whole % 3600 // 60:02d}"
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}" + (
        f":{whole % 60:02d}" if whole < 3600 else ""
    )


@dataclass
class Frame:
    """Where a panel's plot area is, and how data maps into it."""

    left: float
    top: float
    width: float
    height: float
    axis: Axis
    buckets: int

    def x(self, index: float) -> float:
        return self.left + self.width * index / max(1, self.buckets)

    def y(self, value: float) -> float:
        return self.top + self.height * (1 - min(value, self.axis.top) / self.axis.top)


def frame_of(panel: Panel, offset_y: float) -> Frame:
    data_max = max((max(s.values, default=0) for s in panel.series), default=0)
    axis = axis_for(data_max, panel.limits)
    buckets = max((len(s.values) for s in panel.series), default=1)
    return Frame(
        MARGIN_LEFT,
        offset_y + MARGIN_TOP,
        WIDTH - MARGIN_LEFT - MARGIN_RIGHT,
        PANEL_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM,
        axis,
        buckets,
    )


TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
              43200, 86400, 172800, 604800)  # fmt: skip


def time_ticks(span_s: float, most: int = 7) -> list[float]:
    """Round times (seconds from the start) along an x-axis `span_s` long."""
    step = next((s for s in TIME_STEPS if span_s / s <= most - 1), TIME_STEPS[-1])
    return [float(step * i) for i in range(int(span_s // step) + 1)]


def label_rows(frame: Frame, gap: float = 15.0) -> list[float]:
    """Where each shown limit's label goes: beside its line, moved down as far as it takes
    not to sit on the label above it (two limits may have the same value)."""
    rows: list[float] = []
    order = sorted(range(len(frame.axis.shown)), key=lambda i: frame.y(frame.axis.shown[i].value))
    placed: dict[int, float] = {}
    last = frame.top + 2 + 16 * len(frame.axis.above) - gap  # below the off-scale marks
    for index in order:
        y = max(frame.y(frame.axis.shown[index].value), last + gap)
        placed[index] = last = y
    rows = [placed[i] for i in range(len(frame.axis.shown))]
    return rows


def ticks(top: float) -> list[float]:
    step = max(1.0, nice(top / 5))  # concurrency is whole
    count = int(top / step + 1e-9)
    return [step * i for i in range(count + 1)]


def _points(frame: Frame, values: list[int]) -> list[tuple[float, float]]:
    """A step line: each bucket's peak held across the bucket."""
    points: list[tuple[float, float]] = []
    for index, value in enumerate(values):
        y = frame.y(value)
        points.append((frame.x(index), y))
        points.append((frame.x(index + 1), y))
    return points


# PNG --------------------------------------------------------------------------------------
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _dashed(draw: ImageDraw.ImageDraw, x0: float, x1: float, y: float, color: RGB) -> None:
    x = x0
    while x < x1:
        draw.line([(x, y), (min(x + 9, x1), y)], fill=color, width=2)
        x += 14


def render_png(panels: list[Panel], path: Path, title: str = "") -> None:
    header = 36 if title else 0
    image = Image.new("RGB", (WIDTH, header + PANEL_HEIGHT * len(panels)), "white")
    draw = ImageDraw.Draw(image)
    small, normal = _font(12), _font(14)
    if title:
        draw.text((MARGIN_LEFT, 10), title, fill=INK, font=_font(16))
    for number, panel in enumerate(panels):
        frame = frame_of(panel, header + number * PANEL_HEIGHT)
        draw.text((frame.left, frame.top - 24), panel.title, fill=INK, font=normal)
        for value in ticks(frame.axis.top):
            y = frame.y(value)
            draw.line([(frame.left, y), (frame.left + frame.width, y)], fill=GRID, width=1)
            label = f"{value:g}"
            draw.text(
                (frame.left - 8 - draw.textlength(label, font=small), y - 7),
                label,
                fill=MUTED,
                font=small,
            )
        draw.line([(frame.left, frame.top), (frame.left, frame.top + frame.height)], fill=MUTED)
        bottom = frame.top + frame.height
        draw.line([(frame.left, bottom), (frame.left + frame.width, bottom)], fill=MUTED)
        for seconds in time_ticks(frame.buckets * panel.bucket_s):
            label = clock(panel.start_s + seconds)
            x = frame.x(seconds / panel.bucket_s) - draw.textlength(label, font=small) / 2
            draw.line(
                [
                    (x + draw.textlength(label, font=small) / 2, bottom),
                    (x + draw.textlength(label, font=small) / 2, bottom + 4),
                ],
                fill=MUTED,
            )
            draw.text((x, bottom + 6), label, fill=MUTED, font=small)
        for limit, label_y in zip(frame.axis.shown, label_rows(frame), strict=True):
            y = frame.y(limit.value)
            _dashed(draw, frame.left, frame.left + frame.width, y, limit.color)
            draw.text(
                (frame.left + frame.width + 8, label_y - 8),
                f"{limit.label} {limit.value:g}",
                fill=limit.color,
                font=small,
            )
        for index, limit in enumerate(frame.axis.above):
            x = frame.left + frame.width + 8
            y = frame.top + 2 + index * 16
            draw.polygon([(x, y + 10), (x + 5, y), (x + 10, y + 10)], fill=limit.color)
            draw.text(
                (x + 14, y - 1),
                f"{limit.label} {limit.value:g} (off scale)",
                fill=limit.color,
                font=small,
            )
        for series in panel.series:
            points = _points(frame, series.values)
            if len(points) > 1:
                draw.line(points, fill=series.color, width=2)
        legend_y = frame.top + frame.height - 16 * len(panel.series)
        for index, series in enumerate(panel.series):
            y = legend_y + index * 16
            x = frame.left + frame.width + 8
            draw.line([(x, y + 7), (x + 14, y + 7)], fill=series.color, width=3)
            draw.text((x + 20, y), series.label, fill=INK, font=small)
    image.save(path, "PNG", optimize=True)


# SVG --------------------------------------------------------------------------------------
def _hex(color: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


def render_svg(panel: Panel) -> str:
    frame = frame_of(panel, 0)
    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {PANEL_HEIGHT}" width="100%" role="img" '
        f'aria-label="{escape(panel.title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{frame.left}" y="{frame.top - 12}" class="title">{escape(panel.title)}</text>',
    ]
    for value in ticks(frame.axis.top):
        y = frame.y(value)
        out.append(
            f'<line class="grid" x1="{frame.left}" x2="{frame.left + frame.width}" '
            f'y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        out.append(
            f'<text class="tick" x="{frame.left - 8}" y="{y + 4:.1f}" '
            f'text-anchor="end">{value:g}</text>'
        )
    bottom = frame.top + frame.height
    out.append(
        f'<line class="axis" x1="{frame.left}" x2="{frame.left + frame.width}" '
        f'y1="{bottom}" y2="{bottom}"/>'
    )
    for seconds in time_ticks(frame.buckets * panel.bucket_s):
        out.append(
            f'<text class="tick" x="{frame.x(seconds / panel.bucket_s):.1f}" '
            f'y="{bottom + 18}" text-anchor="middle">{clock(panel.start_s + seconds)}</text>'
        )
    for limit, label_y in zip(frame.axis.shown, label_rows(frame), strict=True):
        y = frame.y(limit.value)
        color = _hex(limit.color)
        out.append(
            f'<line class="limit" data-limit="{escape(limit.label)}" data-value="{limit.value:g}"'
            f' x1="{frame.left}" x2="{frame.left + frame.width}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{color}" stroke-dasharray="9 5" stroke-width="2"/>'
        )
        out.append(
            f'<text class="limit-label" x="{frame.left + frame.width + 8}" '
            f'y="{label_y + 4:.1f}" fill="{color}">{escape(limit.label)} {limit.value:g}</text>'
        )
    for index, limit in enumerate(frame.axis.above):
        x, y = frame.left + frame.width + 8, frame.top + 2 + index * 16
        color = _hex(limit.color)
        out.append(
            f'<g class="limit-above" data-limit="{escape(limit.label)}" '
            f'data-value="{limit.value:g}"><path d="M{x} {y + 10} L{x + 5} {y} L{x + 10} '
            f'{y + 10} Z" fill="{color}"/><text x="{x + 14}" y="{y + 9}" fill="{color}">'
            f"{escape(limit.label)} {limit.value:g} (off scale)</text></g>"
        )
    for series in panel.series:
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in _points(frame, series.values))
        out.append(
            f'<polyline class="series" data-series="{escape(series.label)}" '
            f'points="{points}" fill="none" stroke="{_hex(series.color)}" '
            f'stroke-width="2"/>'
        )
    legend_y = frame.top + frame.height - 16 * len(panel.series)
    for index, series in enumerate(panel.series):
        x, y = frame.left + frame.width + 8, legend_y + index * 16
        out.append(
            f'<line x1="{x}" x2="{x + 14}" y1="{y + 7}" y2="{y + 7}" '
            f'stroke="{_hex(series.color)}" stroke-width="3"/>'
            f'<text x="{x + 20}" y="{y + 11}">{escape(series.label)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)
