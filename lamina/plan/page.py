"""A plan as files: report.json, the chart as concurrency.png and report.html (the
figures and one SVG chart per panel; no script, so it renders anywhere, the console
included)."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from lamina.plan import chart
from lamina.plan.chart import BLUE, GREEN, ORANGE, PURPLE, RED, TEAL, Limit, Panel, Series
from lamina.plan.replay import Outcome

MAX_FUNCTION_PANELS = 8


def panels(outcome: Outcome, report: dict[str, Any]) -> list[Panel]:
    seconds = max(1, int(outcome.span + 0.999))
    width = chart.WIDTH - chart.MARGIN_LEFT - chart.MARGIN_RIGHT
    found: list[Panel] = []
    for account, figures in zip(outcome.accounts, report["accounts"], strict=True):
        peaks, bucket = chart.bucketed(list(account.peaks[:seconds]), width)
        unreserved, _ = chart.bucketed(list(account.unreserved[:seconds]), width)
        found.append(
            Panel(
                f"Account {account.id} ({account.region}): concurrent executions",
                [  # drawn in this order: the total on top
                    Series("Unreserved in use", TEAL, unreserved),
                    Series("Concurrent executions", BLUE, peaks),
                ],
                [
                    Limit("Account limit", figures["limit"], RED),
                    Limit("Unreserved pool", figures["unreserved_pool"], PURPLE),
                ],
                bucket,
            )
        )
    by_name = {(f["account"], f["function"]): f for f in report["functions"]}
    ranked = sorted(
        outcome.functions, key=lambda fn: -by_name[(fn.key.account, fn.key.name)]["invocations"]
    )
    for fn in ranked[:MAX_FUNCTION_PANELS]:
        figures = by_name[(fn.key.account, fn.key.name)]
        values, bucket = chart.bucketed(chart.dense(list(fn.secs), list(fn.peaks), seconds), width)
        limits = []
        if figures["reserved"] is not None:
            limits.append(Limit("Reserved", figures["reserved"], ORANGE))
        else:
            account = next(a for a in report["accounts"] if a["account"] == fn.key.account)
            limits.append(Limit("Unreserved pool", account["unreserved_pool"], PURPLE))
        if figures["provisioned"]:
            limits.append(Limit("Provisioned", figures["provisioned"], GREEN))
        found.append(
            Panel(
                f"{fn.setup.name}: concurrent executions",
                [Series("Concurrent executions", BLUE, values)],
                limits,
                bucket,
            )
        )
    return found


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1e293b; margin: 24px; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 24px 0 8px; }
.muted { color: #64748b; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e2e8f0; text-align: right; }
th:first-child, td:first-child { text-align: left; }
svg.chart { max-width: 1200px; display: block; margin: 8px 0 16px; font-size: 12px; }
svg .grid { stroke: #e2e8f0; } svg .axis { stroke: #64748b; }
svg .tick { fill: #64748b; } svg .title { fill: #1e293b; font-size: 14px; }
"""


def _money(value: float) -> str:
    return f"${value:,.4f}" if value < 100 else f"${value:,.2f}"


def html(report: dict[str, Any], charts: list[Panel], png_name: str = "concurrency.png") -> str:
    trace = report["trace"]
    rows = []
    header = (
        "Function",
        "Reserved",
        "Provisioned",
        "Invocations",
        "Throttled",
        "By reason",
        "Cold starts",
        "Cold %",
        "Peak",
        "p99",
        "+ms p50",
        "+ms p99",
        "Cost",
    )

    def row(name: str, f: dict[str, Any], reserved: str, provisioned: str) -> str:
        reasons = ", ".join(f"{k}: {v:,}" for k, v in f["throttles"].items()) or "-"
        cells = (
            name,
            reserved,
            provisioned,
            f"{f['invocations']:,}",
            f"{f['throttled']:,}",
            reasons,
            f"{f['cold_starts']:,}",
            f"{f['cold_start_rate'] * 100:.2f}",
            str(f["peak_concurrency"]),
            str(f["p99_concurrency"]),
            f"{f['added_latency_ms']['p50']:g}",
            f"{f['added_latency_ms']['p99']:g}",
            _money(f["cost"]["total"]),
        )
        return "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"

    for f in report["functions"]:
        rows.append(
            row(
                f["function"],
                f,
                "-" if f["reserved"] is None else str(f["reserved"]),
                str(f["provisioned"] or "-"),
            )
        )
    for a in report["accounts"]:
        rows.append(
            row(
                f"Account {a['account']}",
                a,
                f"limit {a['limit']}",
                f"floor {a['unreserved_floor']}",
            )
        )
    svgs = "\n".join(chart.render_svg(panel) for panel in charts)
    name = escape(str(trace.get("file", "trace")))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Lamina plan: {name}</title>
<style>{STYLE}</style></head>
<body data-plan="ready">
<h1>Plan: {name}</h1>
<p class="muted">{escape(trace["format"])} trace, {trace["invocations"]:,} invocations over
{trace["span_s"]:,.0f} s; prices: {escape(report["prices"]["source"])}.
<a href="report.json">report.json</a> · <a href="{png_name}">{png_name}</a></p>
<h2>Concurrency against the limits</h2>
{svgs}
<h2>Figures</h2>
<table id="figures"><thead><tr>{"".join(f"<th>{escape(h)}</th>" for h in header)}</tr></thead>
<tbody>{"".join(rows)}</tbody></table>
</body></html>
"""


def write(out: Path, report: dict[str, Any], outcome: Outcome) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    charts = panels(outcome, report)
    files = {
        "json": out / "report.json",
        "png": out / "concurrency.png",
        "html": out / "report.html",
    }
    files["json"].write_text(json.dumps(report, indent=1))
    chart.render_png(charts, files["png"], f"Plan: {report['trace'].get('file', 'trace')}")
    files["html"].write_text(html(report, charts))
    return files
