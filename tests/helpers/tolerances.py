"""How close is close enough: every tolerance of the suite, stated once, and the checks that use them.

Errors are relative: ||actual - desired|| / max(||desired||, floor), NaN or inf never passes. The
`Recorder` (the `errors` fixture) keeps the largest error seen per (policy, quantity) and the
session ends with that table, so a tolerance's margin is visible on every run.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from blocks._compat import IS_KERAS3

# The tolerances against float64 (outputs per policy, gradients, mixed-precision gradients, the
# family floor) are the ones `blocks.pick` verifies a winner with; their measured reasons are
# stated there.
from blocks.measure.verify import (  # noqa: E402
    FAMILY_FLOOR,
    GRADIENT_FACTOR,
    MIXED_GRADIENT_TOLERANCE,
    TOLERANCE,
    rel_err,
)

# The float64 reference against the NumPy one: both compute in float64, in another order.
EXACT = 1e-10
# BN moving statistics in float64 against NumPy's. Keras 2 turns BN's decay (1 - momentum) into a
# float32 constant before casting it to the variable's dtype (0.01 becomes 0.0099999998, 0.1
# 0.10000000149), so its float64 moving statistics are off by ~1e-8 of each update, |batch
# statistic - old value| (measured up to 9.3e-9 absolute, TF 2.13); Keras 3 computes the update in
# the variable's dtype. A wrong momentum (0.9 for 0.99, or 0.991) moves them by 1e-3 and more.
MOVING_STATISTICS = dict(rtol=1e-9, atol=1e-12) if IS_KERAS3 else dict(rtol=1e-7, atol=1e-7)

# BatchNormalization with batch statistics over fewer than DEGENERATE_BN values per channel is
# ill-conditioned: its output is +-gamma + beta nearly whatever the input, and roundoff in x - mean
# is amplified by up to |x| / sqrt(epsilon). Training-mode checks on such inputs use
# DEGENERATE_FACTOR x the tolerance; the hypothesis strategies keep most cases at >= 8 values.
DEGENERATE_BN = 8
DEGENERATE_FACTOR = 100


def concatenated(values: dict) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(values[k], np.float64)) for k in sorted(values)])


@dataclasses.dataclass
class Recorder:
    """Asserts closeness and remembers the worst error per (policy, quantity)."""

    worst: dict = dataclasses.field(default_factory=dict)

    def record(self, policy: str, kind: str, err: float, tol: float) -> None:
        old = self.worst.get((policy, kind), (0.0, tol))[0]
        self.worst[(policy, kind)] = (max(old, err), tol)

    def close(
        self,
        actual,
        desired,
        policy: str,
        what: str,
        kind: str = "output",
        *,
        tol: float = None,
        floor: float = 0.0,
        degenerate: bool = False,
    ) -> float:
        """Assert rel_err(actual, desired, floor) <= tol (default TOLERANCE[policy])."""
        err = rel_err(actual, desired, floor)
        tol = TOLERANCE[policy] if tol is None else tol
        if degenerate:
            tol *= DEGENERATE_FACTOR
            kind += f" (BN over <{DEGENERATE_BN})"
        self.record(policy, kind, err, tol)
        assert err <= tol, f"{what}: relative error {err:.3g} > {tol:g} ({policy})"
        return err

    def dict_close(
        self,
        actual: dict,
        desired: dict,
        policy: str,
        what: str,
        kind: str,
        *,
        tol: float = None,
        degenerate: bool = False,
        zero_keys=(),
    ) -> float:
        """`close` per key, each floored at FAMILY_FLOOR[policy] x the largest norm.

        `zero_keys` are exactly zero in exact arithmetic (a conv bias feeding a batch-statistics
        BN): they must vanish to within the tolerance on the scale of the largest entry.
        """
        assert sorted(actual) == sorted(desired), f"{what}: keys differ"
        scale = max(float(np.linalg.norm(np.asarray(v, np.float64))) for v in desired.values())
        worst = 0.0
        for key in desired:
            floor = (1.0 if key in zero_keys else FAMILY_FLOOR[policy]) * scale
            err = self.close(
                actual[key],
                desired[key],
                policy,
                f"{what} {key!r}",
                kind,
                tol=tol,
                floor=floor,
                degenerate=degenerate,
            )
            worst = max(worst, err)
        return worst

    def gradients_close(
        self, actual: dict, desired: dict, policy: str, what: str, *, degenerate=False, zero_keys=()
    ) -> float:
        """Gradients: per key in float32 (GRADIENT_FACTOR x TOLERANCE); under mixed precision as
        one vector (MIXED_GRADIENT_TOLERANCE)."""
        if policy == "float32":
            return self.dict_close(
                actual,
                desired,
                policy,
                what,
                "gradient",
                tol=TOLERANCE[policy] * GRADIENT_FACTOR[policy],
                degenerate=degenerate,
                zero_keys=zero_keys,
            )
        assert sorted(actual) == sorted(desired), f"{what}: keys differ"
        return self.close(
            concatenated(actual),
            concatenated(desired),
            policy,
            what,
            "gradient (whole)",
            tol=MIXED_GRADIENT_TOLERANCE[policy],
        )

    def table(self) -> list:
        return [
            f"{policy:>15}  {kind:<30} {err:9.3g}  (<= {tol:g})"
            for (policy, kind), (err, tol) in sorted(self.worst.items())
        ]
