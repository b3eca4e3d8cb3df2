"""`lamina plan`'s arguments, kept apart from the planner so that building the command
line parser (every `lamina` command does) imports nothing of the planner."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:
    plan = commands.add_parser(
        "plan",
        help="replay a traffic trace through Lamina's concurrency rules in virtual time: "
        "throttles, cold starts, concurrency and cost under given settings",
    )
    plan.add_argument(
        "trace", type=Path, help="Azure 2019 or 2021 trace, or `lamina trace export` output (CSV)"
    )
    plan.add_argument(
        "--settings",
        type=Path,
        help="YAML settings (limits, reserved and "
        "provisioned concurrency, memory, ...); Lambda's defaults otherwise",
    )
    plan.add_argument(
        "--out",
        type=Path,
        help="write report.json, report.html and concurrency.png (and the recommendation) here",
    )
    plan.add_argument(
        "--json",
        dest="json_out",
        help="write the JSON report to this file "
        "('-' for standard output, then the table goes to standard error)",
    )
    plan.add_argument(
        "--recommend",
        action="store_true",
        help="search reserved and "
        "provisioned concurrency for the lowest cost within the objectives",
    )
    plan.add_argument(
        "--validate",
        action="store_true",
        help="replay the trace against a "
        "real `lamina serve` too, and print simulated and observed side by side",
    )
    plan.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="with --validate: run the "
        "real server's platform delays and the trace's time this much faster "
        "(0.1: ten times)",
    )
    plan.add_argument(
        "--isolation",
        default="none",
        help="with --validate: the server's "
        "--isolation (default none: the rules are what is compared)",
    )
    plan.add_argument("--seed", type=int, help="overrides the settings' seed")
    plan.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress (default: when a replay takes over a second)",
    )
