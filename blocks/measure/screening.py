"""A pick's screen: interleaved rounds across the screening workers drop the clearly slower
(successive halving); the best few go on to the final, each in a fresh process."""

from __future__ import annotations

import math
import time

from blocks.measure import race
from blocks.measure.candidates import Run, take_times

FINALISTS = 3  # besides the reference
SCREEN_RUNG = 3  # rounds between two successive-halving cuts
BAR_ROUNDS = 12  # the screening rounds the progress bar counts up to


def screen(run: Run, ready: list) -> None:
    """Halve `ready` every SCREEN_RUNG rounds, down to the finalists and the reference, until
    the screen's share of the budget is spent."""
    until = run.clock.until("screen")
    live = [c for c in ready if c.entrant is not None]
    rounds = 0
    while len(live) > FINALISTS + 1 and time.monotonic() < until:
        n = race.run_rounds(
            [c.entrant for c in live], SCREEN_RUNG, first_round=rounds, seed=1, deadline=until
        )
        rounds += n
        take_times(live, "screen")
        live = [c for c in live if c.status == "ready"]
        run.clock.report_in("screen", min(1, rounds / BAR_ROUNDS), f"screening round {rounds}")
        if n < SCREEN_RUNG:
            break
        scores = {id(c): run.score(c, "screen") for c in live}
        best = min(scores.values())
        keep = sorted(live, key=lambda c: scores[id(c)])
        # Halve, but never below the finalists, and never drop the reference.
        cut = max(FINALISTS + 1, math.ceil(len(keep) / 2))
        for c in keep[cut:]:
            if c is not run.reference:
                c.status = "screened out"
                c.reason = (
                    f"{scores[id(c)] / best:.2f}x the best time after {rounds} screening rounds"
                )
        live = [c for c in live if c.status == "ready"]


def finals(run: Run) -> list:
    """The reference and the FINALISTS fastest screened, each to be compiled afresh (or kept
    in the process it was screened alone in); the others are screened out."""
    ranked = sorted(run.with_status("ready"), key=lambda c: run.score(c, "screen"))
    finalists = [c for c in ranked if c is not run.reference and not c.anchor][:FINALISTS]
    for c in ranked:
        if c not in finalists and c is not run.reference:
            c.status, c.reason = "screened out", "not among the fastest screened"
    # The reference first: every speedup is measured against it.
    chosen = ([run.reference] if run.reference else []) + finalists
    _fresh_processes(run, chosen)
    return chosen


def _fresh_processes(run: Run, chosen: list) -> None:
    """Finalists get a process of their own: a screening worker that held one candidate only
    (an engine's) keeps it and its compiled step; every other screening worker goes."""
    holders: dict = {}
    for c in run.candidates:
        if c.entrant is not None:
            holders.setdefault(id(c.entrant.worker), []).append(c)
    keep = set()
    for c in chosen:
        if c.entrant is not None and len(holders[id(c.entrant.worker)]) == 1:
            keep.add(id(c.entrant.worker))
            c.entrant.reset()
        else:
            c.status, c.entrant = "pending", None
    for name, worker in list(run.pool.workers.items()):
        if id(worker) not in keep:
            run.pool.close(name)
