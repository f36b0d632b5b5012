"""The one timing path of `pytest bench/` and `blocks.pick`: interleaved rounds across workers.

In each round every entrant runs one sample (a calibrated number of calls of its compiled step,
timed inside its worker), one entrant at a time, in a fresh random order, so a slow spell on a
shared machine lands on all of them alike and no entrant always follows another. An entrant whose
worker dies or hangs leaves the race with the reason; the others go on. Every race also measures
how busy the machine was (`load`): each entrant's `load` covers the rounds of its `times`.
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Callable, Optional

from blocks.measure import load as machine_load
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
    # What other processes took of the machine during the rounds of `times`.
    load: machine_load.Load = dataclasses.field(default_factory=machine_load.Load)

    def reset(self) -> None:
        """Forget the rounds run so far (and the load measured during them)."""
        self.times, self.load = {}, machine_load.Load()

    def timeout_s(self) -> float:
        return max(60.0, 30.0 * self.call_s * self.calls)


def prepare(
    worker,
    key: str,
    workload,
    config,
    min_sample_s: float,
    timeout_s: float,
    label: Optional[str] = None,
) -> tuple:
    """Compile `config` on `workload` in `worker`, held there as `key`: the entrant that times it
    (named `label`, else the configuration's label) and the worker's whole reply (compile_s,
    layout, output_shape, finite, flop_per_image, engine).

    Raises what `workers.Worker.call` raises: RequestFailed (it does not compile or run there),
    WorkerError (the worker died or did not answer in `timeout_s`).
    """
    reply = worker.call(
        "prepare",
        timeout_s,
        key=key,
        workload=workload.to_json(),
        config=config.to_json(),
        min_sample_s=min_sample_s,
    )
    entrant = Entrant(label or config.label, worker, key, reply["calls"], reply["call_s"])
    return entrant, reply


def one_scale(entrants: list) -> int:
    """Give `entrants` the same calls per sample (the most any needs), so that their samples span
    the same time scale; returns it."""
    calls = max(e.calls for e in entrants)
    for e in entrants:
        e.calls = calls
    return calls


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
    sampler = machine_load.Sampler(_pids(entrants)).start()
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
        sampler.sample()  # before the next round, in case a worker exits in it
        done += 1
        if after_round is not None:
            after_round(r)
    reading = sampler.stop()
    for e in entrants:
        e.load = e.load + reading
    return done


def _pids(entrants: list) -> list:
    """The race's worker processes: a cluster's every member."""
    pids = []
    for e in entrants:
        for w in getattr(e.worker, "members", None) or [e.worker]:
            proc = getattr(w, "proc", None)
            if proc is not None:
                pids.append(proc.pid)
    return pids
