"""The plan's chart, looked at as a picture: concurrency curves against the limits drawn as
dashed lines where the data reaches them, and marked at the top edge where they are far
above it (the y-axis is scaled to the data)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from lamina.plan import chart
from lamina.plan.command import plan
from lamina.plan.page import write
from lamina.plan.settings import parse
from tests.unit.test_plan_replay import write_trace

Box = tuple[int, int, int, int]  # left, top, right, bottom of a panel's plot area


def like(pixel: tuple[int, int, int], color: tuple[int, int, int], tolerance: int = 60) -> bool:
    return sum(abs(a - b) for a, b in zip(pixel, color, strict=True)) <= tolerance


def plot_area(panel: int) -> Box:
    top = 36 + panel * chart.PANEL_HEIGHT + chart.MARGIN_TOP
    bottom = top + chart.PANEL_HEIGHT - chart.MARGIN_TOP - chart.MARGIN_BOTTOM
    return chart.MARGIN_LEFT, top, chart.WIDTH - chart.MARGIN_RIGHT, bottom


def dashed_rows(image: Image.Image, box: Box, color: tuple[int, int, int]) -> list[int]:
    """Rows of the plot area crossed by a dashed line of `color` (a quarter of its width
    at least: the dashes, less where the curve runs over them)."""
    left, top, right, bottom = box
    pixels = image.load()
    assert pixels is not None
    return [
        y
        for y in range(top - 2, bottom + 3)
        if sum(like(pixels[x, y], color) for x in range(left, right)) > (right - left) * 0.25
    ]


def curve_rows(image: Image.Image, box: Box) -> list[int]:
    left, top, right, bottom = box
    pixels = image.load()
    assert pixels is not None
    return sorted(
        {
            y
            for y in range(top - 2, bottom + 3)
            for x in range(left, right)
            if like(pixels[x, y], chart.BLUE, 40)
        }
    )


def test_the_chart_shows_the_curves_reaching_their_limits(tmp_path: Path) -> None:
    # Bursts every minute for ten minutes: "capped" (reserved 6) wants 10 at once,
    # "shared" (unreserved) wants 20: together they hit the account's 20.
    rows = []
    for minute in range(10):
        rows += [("capped", minute * 60.0 + 1, 20.0)] * 10
        rows += [("shared", minute * 60.0 + 2, 20.0)] * 20
        rows += [("quiet", minute * 60.0 + 30, 1.0)]
    trace = write_trace(tmp_path / "bursts.csv", rows)
    settings = parse(
        {
            "account": {"limit": 20, "unreserved_floor": 5},
            "functions": {"app-capped": {"reserved": 6}},
        }
    )
    planned = plan(trace, settings)
    files = write(tmp_path / "out", planned.report, planned.outcome)
    image = Image.open(files["png"]).convert("RGB")
    assert image.size[0] == chart.WIDTH and image.size[1] > 3 * chart.PANEL_HEIGHT

    # Panel 0, the account: its limit (20) is a red dashed line the curve reaches.
    account = plot_area(0)
    red = dashed_rows(image, account, chart.RED)
    assert red, "the account limit is drawn as a line"
    blue = curve_rows(image, account)
    assert blue, "the account's concurrency is drawn"
    assert min(blue) <= max(red) + 2, "the curve reaches the account limit"
    assert max(blue) >= account[3] - 3, "and goes back down to zero between bursts"

    # The functions' panels, busiest first: shared (20 a minute), capped (10), quiet (1).
    order = [f["function"] for f in planned.report["functions"]]
    assert order == ["app-shared", "app-capped", "app-quiet"]
    capped = plot_area(2)
    orange = dashed_rows(image, capped, chart.ORANGE)
    assert orange, "the reservation is drawn as a line"
    assert abs(min(curve_rows(image, capped)) - max(orange)) <= 3, "capped at its reservation"
    shared = plot_area(1)
    purple = dashed_rows(image, shared, chart.PURPLE)
    assert purple, "the unreserved pool (14) is the shared function's limit"
    assert abs(min(curve_rows(image, shared)) - max(purple)) <= 3

    # The quiet function peaks at 1, its limit is the unreserved pool of 14: far above
    # twice its axis, so the line is not drawn but marked at the top edge, and the curve
    # uses the panel's height instead of lying flat on the floor.
    quiet = plot_area(3)
    assert not dashed_rows(image, quiet, chart.PURPLE)
    height = quiet[3] - quiet[1]
    assert min(curve_rows(image, quiet)) < quiet[1] + height * 0.5  # 1 of 1.5, not of 14
    pixels = image.load()
    assert pixels is not None
    marker = [
        (x, y)
        for x in range(quiet[2], chart.WIDTH)
        for y in range(quiet[1] - 2, quiet[1] + 30)
        if like(pixels[x, y], chart.PURPLE)
    ]
    assert marker, "the limit off the scale is marked at the top edge"


def test_the_axis_rule() -> None:
    limit = chart.Limit("Account limit", 1000, chart.RED)
    near = chart.Limit("Reserved", 15, chart.ORANGE)
    axis = chart.axis_for(11, [limit, near])
    assert axis.shown == [near] and axis.above == [limit]
    assert 15 < axis.top <= 20
    assert chart.axis_for(0, []).top == 1.5
    assert chart.axis_for(900, [limit]).shown == [limit]
