"""Lambda's prices, kept as data (prices.json): requests, duration by memory and
architecture, provisioned concurrency and the duration of invocations it serves.

A settings file may name a price file of its own (`prices: path.json`, same shape) for
another region or a negotiated rate. Duration is billed in whole milliseconds;
provisioned concurrency from the time it is enabled, rounded up to five minutes.
On-demand environments are billed for their init too (`bill_init_on_demand`).
Duration tiers apply to a month's aggregate; a trace shorter than a month is priced
at the first tier.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT = Path(__file__).resolve().parent / "prices.json"
ARCHITECTURES = ("x86_64", "arm64")


class PriceError(ValueError):
    pass


@dataclass(frozen=True)
class Rates:
    request: float  # per request
    duration_gb_s: float  # on-demand duration, per GB-second
    provisioned_gb_s: float  # provisioned concurrency configured, per GB-second
    provisioned_duration_gb_s: float  # duration of invocations on provisioned environments
    provisioned_rounding_s: float
    bill_init_on_demand: bool


@dataclass(frozen=True)
class PriceTable:
    source: str
    currency: str
    regions: dict[str, dict[str, Any]]

    def rates(self, region: str, architecture: str) -> Rates:
        table = self.regions.get(region)
        if table is None:
            raise PriceError(
                f"no prices for region {region!r} (the table has {sorted(self.regions)}); "
                "give a price file of your own with `prices:` in the settings"
            )
        arch = table.get(architecture)
        if arch is None:
            raise PriceError(f"no prices for architecture {architecture!r} in {region}")
        return Rates(
            request=float(table["request"]),
            duration_gb_s=float(arch["duration_gb_s"]),
            provisioned_gb_s=float(arch["provisioned_gb_s"]),
            provisioned_duration_gb_s=float(arch["provisioned_duration_gb_s"]),
            provisioned_rounding_s=float(table.get("provisioned_rounding_s", 300)),
            bill_init_on_demand=bool(table.get("bill_init_on_demand", True)),
        )


def load(path: Path | None = None) -> PriceTable:
    where = path or DEFAULT
    try:
        document = json.loads(where.read_text())
        return PriceTable(
            str(document.get("source", where)),
            str(document.get("currency", "USD")),
            dict(document["regions"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PriceError(f"cannot read the price table {where}: {exc}") from exc
