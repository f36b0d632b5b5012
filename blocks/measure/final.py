"""A pick's final and verification: interleaved rounds between the finalists and the reference,
each in a process of its own, decide by the paired statistics of `stats`; the winner's own
process then checks it computes the float64 reference's function, or it is disqualified and the
next best decided."""

from __future__ import annotations

import time

from blocks.executions import ENGINES
from blocks.measure import race, stats, workers
from blocks.measure.budget import CLOSE_S
from blocks.measure.candidates import Run, take_times
from blocks.measure.workload import Config
from blocks.variants import VARIANTS

# The final rounds fill what the budget leaves, up to this many, so that a fast step does not run
# on for the whole of a generous budget.
MAX_FINAL_ROUNDS = 60
# Differences smaller than this are ties: two processes holding the same configuration were
# measured up to 4% apart here (tests/data/noise.json: 6 workloads x 6 pairs of processes), so a
# smaller gap between two processes is not the configurations'.
TIE_MARGIN = 0.04
# How much simpler one configuration is than another, for breaking ties: plain tf.function before
# eager and XLA, TensorFlow's default runtime before a setting the user must make.
EXECUTION_COST = {"graph": 0, "eager": 1, "xla": 2, **{name: 3 for name in ENGINES}}
RUNTIME_COST = {"default": 0}
# At a tie, the higher precision wins whatever else differs (a cost above any sum of the others):
# a reduced precision changes the numbers a user gets, so it must be clearly faster to be chosen.
# float16 keeps more of the significand than bfloat16.
PRECISION_COST = {None: 0, "float32": 0, "mixed_float16": 100, "mixed_bfloat16": 101}
# The verification's time, kept back from the final: it builds and runs the step again, so a
# multiple of the slowest finalist's compile time, and a floor.
VERIFY_COMPILES, VERIFY_FLOOR_S = 2.5, 5.0
VERIFY_TIMEOUT_S = 120.0


def complexity(config: Config) -> float:
    return (
        VARIANTS[config.variant].complexity
        + EXECUTION_COST[config.execution]
        + RUNTIME_COST.get(config.runtime, 1)
        + PRECISION_COST[config.precision]
    )


def final_rounds(run: Run, finals: list) -> None:
    """Race `finals` for what the budget leaves, less the verification and a round in flight."""
    clock = run.clock
    verify_reserve = VERIFY_COMPILES * max(c.compile_s or 0 for c in finals) + VERIFY_FLOOR_S
    per_round = sum(c.entrant.call_s * c.entrant.calls for c in finals) + 0.01 * len(finals)
    # A round in flight at `until` finishes: it comes out of the budget too.
    end = clock.start + clock.budget_s - CLOSE_S - verify_reserve - per_round
    until = max(time.monotonic() + 1, end)
    window = int((until - time.monotonic()) / per_round)
    rounds = max(stats.MIN_ROUNDS, min(MAX_FINAL_ROUNDS, window))
    start = clock.elapsed() / clock.budget_s

    def after(r):
        clock.report_in("final", (r + 1) / rounds, f"final round {r + 1}/{rounds}", start=start)

    race.run_rounds([c.entrant for c in finals], rounds, seed=2, deadline=until, after_round=after)
    take_times(finals, "final")
    run.add_race_load(finals)


def decide_and_verify(run: Run, finals: list) -> tuple:
    """(the decision, the winner's verification): the fastest that passes its verification,
    the candidates that fail it disqualified; (None, ...) if none is left or the budget ran
    out first (`run.unverified` says which)."""
    verification = None
    remaining = [c for c in finals if not c.anchor]
    if not remaining:
        raise run.nothing_ran()
    decision = None
    while remaining:
        decision = stats.decide(
            {c.config.label: c.final for c in remaining},
            order={c.config.label: run.score(c, "final") for c in remaining},
            complexity={c.config.label: complexity(c.config) for c in remaining},
            margin=TIE_MARGIN,
        )
        winner = next(c for c in remaining if c.config.label == decision.winner)
        checked = _verify(run, winner)
        if checked is None:  # the budget ran out
            decision = None
            break
        verification = checked
        if verification["passed"]:
            winner.status = "winner"
            break
        winner.status, winner.reason = "disqualified", verification["text"]
        remaining.remove(winner)
        decision = None
    for c in finals:
        if c.status == "ready":
            c.status = "reference" if c.anchor else "finalist"
    return decision, verification


def _verify(run: Run, winner):
    """The winner's verification in its own process, or None if the budget ran out first."""
    run.clock.report_in("verify", 1.0, f"verifying {winner.config.label}")
    try:
        return winner.entrant.worker.call(
            "verify", run.clock.timeout(VERIFY_TIMEOUT_S), key=winner.entrant.key
        )
    except (workers.WorkerError, workers.RequestFailed) as e:
        if isinstance(e, workers.WorkerError) and run.clock.left() <= CLOSE_S:
            winner.status = "not measured"
            winner.reason = "the budget ran out while it was verified"
            run.unverified = f"the budget ran out before {winner.config.label} was verified"
            return None
        return {"passed": False, "checks": {}, "text": f"could not verify: {e}"}
