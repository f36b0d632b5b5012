"""How a pick shares its budget out: the phases, the share of the budget each may run to, and
the clock every phase reads.

Every fraction of the budget a pick uses is in `PHASES`, each with the reason for its share;
the seconds themselves are `workload.Budget`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional


@dataclasses.dataclass(frozen=True)
class Phase:
    """A phase of a pick: no new work starts once `until` of the budget is spent (None: the
    phase runs to what the budget leaves), and the progress bar goes from `bar_from` to
    `bar_to` while it runs (`bar_from` None: from where the clock stands when it starts)."""

    name: str
    until: Optional[float]
    bar_from: Optional[float]
    bar_to: float
    why: str


# fmt: off
PHASES = {p.name: p for p in (
    # A pick of more candidates than finalists compiles them in shared workers, screens, then
    # compiles the finalists afresh; of fewer, it compiles each in its own process at once.
    Phase("compile", 0.40, 0.0, 0.40, "compiling, not timing, is most of what screening costs"),
    Phase("screen", 0.60, 0.45, 0.65, "shared-process rounds only rank: halving needs few"),
    Phase("compile finalists", 0.75, 0.65, 0.75, "the few finalists compile again, each alone"),
    Phase("compile few", 0.60, 0.0, 0.60, "no screen: the rest of the budget decides"),
    Phase("final", None, None, 0.90, "the deciding rounds take whatever compiling left"),
    Phase("verify", None, 0.96, 0.96, "one check of the winner, its time kept from the final"),
)}
# fmt: on
# A compile request started before its phase's end may run this share of the budget past it: a
# worker started in vain measures nothing.
COMPILE_GRACE = 0.25
# The bar never shows a phase that starts where the clock stands past this.
FINAL_BAR_CAP = 0.95
# Kept back from the budget for stopping the workers at the end.
CLOSE_S = 1.0


class Clock:
    """The budget's clock, started when the pick starts, and its progress reports."""

    def __init__(self, budget_s: float, progress: Optional[Callable]):
        self.start = time.monotonic()
        self.budget_s = budget_s
        self.progress = progress or (lambda *a: None)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def until(self, phase: str) -> float:
        """The monotonic time when `phase` stops starting work."""
        return self.at(PHASES[phase].until)

    def at(self, fraction: float) -> float:
        """The monotonic time when `fraction` of the budget is spent."""
        return self.start + fraction * self.budget_s

    def left(self) -> float:
        return max(0.0, self.budget_s - self.elapsed())

    def timeout(self, wanted: float) -> float:
        """A request's timeout: `wanted`, but never past the budget (less CLOSE_S)."""
        return max(0.1, min(wanted, self.left() - CLOSE_S))

    def report(self, fraction: float, message: str) -> None:
        self.progress(fraction, message, self.elapsed(), self.left())

    def report_in(self, phase: str, done: float, message: str, start: float = 0.0) -> None:
        """Report `done` (0 to 1) of `phase` on the bar (from `start` if the phase's bar starts
        where the clock stood)."""
        p = PHASES[phase]
        if p.bar_from is None:  # started late, it may have to count down to bar_to: capped
            self.report(min(FINAL_BAR_CAP, start + (p.bar_to - start) * done), message)
        else:
            self.report(p.bar_from + (p.bar_to - p.bar_from) * done, message)
