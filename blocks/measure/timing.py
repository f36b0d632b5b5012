"""Timing primitives: the clock, one sample of a step, and how many calls make a sample.

Every timed call ends in a host sync on its result (`steps.Step.run`); tracing, compilation and
warm-up happen in `steps.prepare`, before any of this. Samples are taken inside the process that
holds the step (a worker), so no inter-process traffic is ever inside a timed region.
"""

from __future__ import annotations

import math
import time
from typing import Callable

clock = time.perf_counter


def sample(run: Callable[[], object], calls: int = 1) -> float:
    """Seconds per call of `run`, over `calls` consecutive calls (one sample of a round)."""
    t0 = clock()
    for _ in range(calls):
        run()
    return (clock() - t0) / calls


def calls_per_sample(call_s: float, min_sample_s: float, max_calls: int = 64) -> int:
    """Enough consecutive calls that one sample lasts about `min_sample_s` (a fast step at batch 1
    is then not timed on a scale where the clock and scheduler noise dominate)."""
    return int(min(max_calls, max(1, math.ceil(min_sample_s / max(call_s, 1e-6)))))
