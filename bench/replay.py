"""pytest-benchmark's clock for `pytest bench/`: it replays times measured in worker processes.

Every benchmark is timed inside the worker process that holds it (`blocks.measure.race`), so the
times pytest-benchmark keeps must be those, not the parent's wall time around a request (which
would add the inter-process round trip to every sample). bench/conftest.py makes this module's
`clock` pytest-benchmark's timer: it stands still, and `play(seconds)` moves it by one measured
sample, inside the call pytest-benchmark times.
"""

from __future__ import annotations

_now = [0.0]


def clock() -> float:
    return _now[0]


def play(seconds: float) -> None:
    _now[0] += float(seconds)


def player(samples):
    """A target for `benchmark.pedantic(target, rounds=len(samples))`: each call plays the next
    measured sample."""
    queue = list(samples)

    def target():
        play(queue.pop(0))

    return target
