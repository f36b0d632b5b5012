"""The one timing path of `pytest bench/` and `blocks.pick`: interleaved rounds across workers.

In each round every entrant runs one sample (a calibrated number of calls of its compiled step,
timed inside its worker), one entrant at a time, in a fresh random order, so a slow spell on a
shared machine lands on all of them alike and no entrant always follows another. An entrant whose
worker dies or hangs leaves the race with the reason; the others go on.
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Callable, Optional

from blocks.measure import workers


@dataclasses.dataclass
class Entrant:
    """One compiled step in one worker: `key` names it there; `calls` per sample."""

    label: str
    worker: "workers.Worker"
    key: str
    calls: int = 1
    call_s: float = 0.0
    times: dict = dataclasses.field(default_factory=dict)  # round -> seconds per call
    error: Optional[str] = None

    def timeout_s(self) -> float:
        return max(60.0, 30.0 * self.call_s * self.calls)


def run_rounds(
    entrants: list,
    rounds: int,
    *,
    first_round: int = 0,
    seed: int = 0,
    deadline: Optional[float] = None,
    clock: Callable[[], float] = None,
    after_round: Optional[Callable[[int], None]] = None,
) -> int:
    """Run up to `rounds` interleaved rounds (numbered from `first_round`), stopping early at
    `deadline` (a `clock()` time) between rounds. Returns the number of rounds run."""
    clock = clock or time.monotonic
    rng = random.Random(seed * 1_000_003 + first_round)
    done = 0
    for r in range(first_round, first_round + rounds):
        if deadline is not None and clock() >= deadline:
            break
        live = [e for e in entrants if e.error is None]
        if not live:
            break
        rng.shuffle(live)
        for e in live:
            if e.error is not None:  # its worker died earlier in this round
                continue
            try:
                reply = e.worker.call("time", e.timeout_s(), key=e.key, calls=e.calls)
                e.times[r] = reply["seconds"]
            except workers.RequestFailed as failure:
                e.error = str(failure)
            except workers.WorkerError as failure:
                for other in entrants:  # everything that worker held is gone
                    if other.worker is e.worker and other.error is None:
                        other.error = str(failure)
        done += 1
        if after_round is not None:
            after_round(r)
    return done
