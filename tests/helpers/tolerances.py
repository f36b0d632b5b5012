"""How close is close enough: every tolerance of the suite, stated once, and the checks that use them.

Errors are relative: ||actual - desired|| / max(||desired||, floor), NaN or inf never passes. The
`Recorder` (the `errors` fixture) keeps the largest error seen per (policy, quantity) and the
session ends with that table, so a tolerance's margin is visible on every run.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Against the float64 reference (the project's own, or the NumPy one), per dtype policy:
# float32: blocks and outputs measure ~1e-7-1e-6; gradients of a whole 18-layer network up to
#   1.1e-5 (nchw, imagenet arch, oneDNN on an AMX Xeon, TF 2.21), so gradients get GRADIENT_FACTOR.
# mixed_bfloat16: bfloat16 keeps 8 significant bits (eps 2**-8 = 3.9e-3); variants round
#   intermediates at different points, so a few eps accumulate over a network (measured <= 1.2e-2).
# mixed_float16: 11 bits (eps 4.9e-4); measured <= 1e-3 on blocks and networks.
TOLERANCE = {"float32": 1e-5, "mixed_bfloat16": 3e-2, "mixed_float16": 3e-3}
GRADIENT_FACTOR = {"float32": 3.0, "mixed_bfloat16": 1.0, "mixed_float16": 1.0}
# The float64 reference against the NumPy one: both compute in float64, in another order.
EXACT = 1e-10

# BatchNormalization with batch statistics over fewer than DEGENERATE_BN values per channel is
# ill-conditioned: its output is +-gamma + beta nearly whatever the input, and roundoff in x - mean
# is amplified by up to |x| / sqrt(epsilon). Training-mode checks on such inputs use
# DEGENERATE_FACTOR x the tolerance; the hypothesis strategies keep most cases at >= 8 values.
DEGENERATE_BN = 8
DEGENERATE_FACTOR = 100

# Mixed-precision gradients, as one vector, against the float64 reference: the half-precision
# activations a training-mode BN normalises turn rounding into gradient noise wherever a channel's
# mean dwarfs its spread. Measured on 60 random blocks (BN over >= 18 values, TF 2.21): bfloat16
# median 0.6%, 90th percentile 11%, worst 17% (hypothesis found 26%); float16 median 0.06%,
# worst 3.4%. These bounds catch a wrong or missing gradient path, not a precision difference.
MIXED_GRADIENT_TOLERANCE = {"mixed_bfloat16": 0.4, "mixed_float16": 0.1}

# Gradients are compared against max(own norm, FAMILY_FLOOR x the largest gradient norm of the
# model): roundoff in a gradient that cancels to (nearly) zero in exact arithmetic (a conv bias
# feeding a batch-statistics BN) is set by the magnitudes that cancel, not by the tiny result.
FAMILY_FLOOR = {"float32": 1e-2, "mixed_bfloat16": 1.0, "mixed_float16": 1.0}


def rel_err(actual, desired, floor: float = 0.0) -> float:
    a = np.asarray(actual, np.float64)
    b = np.asarray(desired, np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"shape {a.shape} != reference shape {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("inf")
    denom = max(float(np.linalg.norm(b)), floor)
    diff = float(np.linalg.norm(a - b))
    if denom == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / denom


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
