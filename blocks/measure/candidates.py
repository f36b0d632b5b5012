"""What a pick's phases share: its candidates, each with its state, and the run they belong to.

A `Candidate` goes pending -> ready (compiled) -> finalist / winner / reference, or leaves with a
reason: "could not run", "not measured" (the budget ran out), "screened out", "disqualified".
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from blocks.executions import ENGINES, is_engine
from blocks.measure import devices, race, stats
from blocks.measure.budget import Clock
from blocks.measure.load import Load
from blocks.measure.workload import REFERENCE, Accuracy, Config, Workload
from blocks.variants import VARIANTS


class PickError(RuntimeError):
    """No candidate could run (or was left); the message gives the reasons."""


@dataclasses.dataclass
class Candidate:
    config: Config
    anchor: bool = False  # measured as the reference only; not a candidate
    status: str = "pending"
    reason: Optional[str] = None
    detail: str = ""
    compile_s: Optional[float] = None
    layout: Optional[dict] = None
    engine: Optional[dict] = None
    entrant: Optional[race.Entrant] = None  # while it races
    screen: dict = dataclasses.field(default_factory=dict)
    final: dict = dataclasses.field(default_factory=dict)
    # A precision other than float32: its logits on the verification images, then its cost
    # against the float64 reference (`numerics`).
    logits: Optional[list] = None
    cost: Optional[dict] = None


class Run:
    """One pick's state: its workers (`pool`), workload, candidates and clock, and what the
    phases learn on the way (the workers' versions, the machine's load, notes)."""

    def __init__(
        self,
        pool,
        workload: Workload,
        configs: list,
        equal: dict,
        clock: Clock,
        accuracy: Optional[Accuracy] = None,
    ):
        self.pool, self.workload, self.clock = pool, workload, clock
        self.accuracy = accuracy or Accuracy()
        self.configs = configs
        # Execution order: graph first, eager last, so that a short budget compiles the likelier
        # winners; the reference always runs, as the anchor every speedup is measured against.
        rank = {e: i for i, e in enumerate(("graph", *ENGINES, "xla", "eager"))}
        ordered = sorted(configs, key=lambda c: (rank[c.execution], configs.index(c)))
        self.candidates = [Candidate(c) for c in ordered]
        self.reference = next((c for c in self.candidates if c.config == REFERENCE), None)
        if self.reference is None:
            self.reference = Candidate(REFERENCE, anchor=True)
            self.candidates.insert(0, self.reference)
        self.notes = [
            f"runtime {same!r} is TensorFlow's default on this CPU: measured once, as 'default'"
            for same in equal
        ]
        self.versions: dict = {}
        self.unverified = "every finalist failed its verification"
        self.load = Load()  # others' CPU use over the pick's races
        self._native = None  # devices.native_dtype_policies, asked once

    def with_status(self, status: str) -> list:
        return [c for c in self.candidates if c.status == status]

    def refuse_statically(self) -> None:
        """What cannot run here, known without a worker."""
        for c in self.candidates:
            execution = c.config.execution
            if self.workload.mode == "train" and not VARIANTS[c.config.variant].trainable:
                c.status, c.reason = "could not run", f"{c.config.variant}: inference-only"
            elif is_engine(execution) and self.workload.mode != "inference":
                c.status, c.reason = "could not run", f"{execution}: runs inference only"
            elif is_engine(execution) and ENGINES[execution].missing():
                c.status, c.reason = "could not run", ENGINES[execution].missing()
            elif c.config.precision is not None and self.precision_refusal(c.config):
                c.status, c.reason = "could not run", self.precision_refusal(c.config)

    def precision_refusal(self, config: Config) -> Optional[str]:
        """Why `config`'s precision does not run natively here (None: it does): a serving
        engine's own answer, else the device's (`devices.native_dtype_policies`)."""
        policy = config.precision
        if is_engine(config.execution):
            from blocks import engines

            return engines.precision_refusal(config.execution, policy)
        if self._native is None:
            self._native = devices.native_dtype_policies(self.workload.device)
        reason = self._native.get(policy)
        return None if reason is None else f"{policy}: {reason}"

    def score(self, c: Candidate, times: str) -> float:
        """Median per-round time ratio to the reference (lower is faster); inf without pairs."""
        if self.reference is None or self.reference.entrant is None:
            values = list(getattr(c, times).values())
            return float(sorted(values)[len(values) // 2]) if values else math.inf
        r = stats.ratio(getattr(self.reference, times), getattr(c, times))
        return r.median if r.rounds else math.inf

    def add_race_load(self, entered: list) -> None:
        """Add the load of the race just run by `entered`: the one that raced longest saw all
        of it."""
        loads = [c.entrant.load for c in entered if c.entrant is not None]
        self.load += max(loads, key=lambda load: load.wall_s, default=Load())

    def nothing_ran(self) -> PickError:
        reasons = [f"{c.config.label}: {c.reason}" for c in self.candidates if c.reason]
        if reasons and all("the budget ran out" in r for r in reasons):
            # Not the candidates' fault: say what to change.
            return PickError(
                f"The budget of {self.clock.budget_s:g} s ran out before any candidate was "
                f"measured on {self.workload.device} (compiling took longer on this machine now); "
                f"give a larger --budget-s. {'; '.join(reasons)}"
            )
        return PickError(f"No candidate could run on {self.workload.device}. {'; '.join(reasons)}")


def take_times(entered: list, phase: str) -> None:
    """Copy each entrant's round times into the candidate's `phase` ("screen" or "final");
    one whose worker failed could not run."""
    for c in entered:
        setattr(c, phase, dict(c.entrant.times))
        if c.entrant.error:
            c.status, c.reason = "could not run", c.entrant.error
