"""How much a throttle decision costs: Counter.acquire refusing, against baselines measured
in the same run (an empty Python call, and an admitted acquire + release).

Run: .venv/bin/python bench/throttle.py
"""

from __future__ import annotations

import timeit

from lamina.engine.concurrency import Counter, Limits
from lamina.keys import FunctionKey

ROUNDS = 200_000


def main() -> None:
    counter = Counter(Limits(account=1000, floor=100))
    refused = FunctionKey("000000000000", "us-east-1", "disabled")
    admitted = FunctionKey("000000000000", "us-east-1", "open")
    counter.set_reserved(refused, 0)
    clock = iter(range(10**9))

    def nothing() -> None:
        return None

    def throttle() -> None:
        counter.acquire(refused, next(clock) * 1e-6)

    def admit_and_release() -> None:
        decision = counter.acquire(admitted, next(clock) * 1e-3)
        assert decision.lease is not None
        counter.release(decision.lease)

    base = min(timeit.repeat(nothing, number=ROUNDS, repeat=5)) / ROUNDS
    for label, body in (("throttled acquire", throttle), ("acquire + release", admit_and_release)):
        took = min(timeit.repeat(body, number=ROUNDS, repeat=5)) / ROUNDS
        print(f"{label:<20} {took * 1e6:6.2f} µs  = {took / base:5.1f}x an empty call")


if __name__ == "__main__":
    main()
