"""Known TensorFlow/Keras defects that make one measured quantity miss its tolerance.

Each entry names the exact versions or host where it was measured and the one quantity it affects
(gradients and the step after them). A check wraps only that quantity in
`misses.expect(reason)`: a tolerance miss there is noted, not raised, and the checks go on (other
drawn cases too); at the end `misses.skip_if_any()` skips the test naming the defect and the
worst miss. If the quantity meets its tolerance, the test passes as usual. Nothing else is ever
skipped for precision.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import pytest

from blocks import _compat
from tests.helpers.hosts import avx2_only, onednn_on_here

# Keras 3.0.0 on TF 2.16.2, measured against the float64 reference (Keras 3.1+ meets 1e-5):
# xla and nchw float32 gradients ~2.5e-3 off; every variant's mixed_bfloat16 gradients ~19% off.
_KERAS_300 = "3.0.0"


def known_issue(variant: str, policy: str, case: Optional[dict] = None) -> Optional[str]:
    """Why this version or host is measured to miss the gradient tolerance here, or None.

    `case`: a drawn block (tests/helpers/strategies.py), for defects of particular shapes.
    """
    if _compat.KERAS_VERSION == _KERAS_300:
        if policy != "float32":
            return f"Keras {_KERAS_300}: mixed-precision gradients measured ~19% off float64"
        if variant in ("xla", "nchw"):
            return f"Keras {_KERAS_300}: {variant} float32 gradients measured ~2.5e-3 off float64"
    channels_last = variant != "nchw"
    if case is not None and channels_last and onednn_on_here() and avx2_only():
        s = case["strides"]
        projection = s == 2 or case["channels"] != case["filters"]
        if (
            projection
            and s == 2
            and case["channels"] <= 6
            and case["height"] % 2 == 0
            and case["width"] % 2 == 0
        ):
            return (
                "oneDNN on an AVX2-only CPU: the NHWC weight gradient of a 1x1 stride-2 conv from "
                "1-6 input channels at even sizes is measured 10-97% off float64 (TF 2.15, 2.21)"
            )
    return None


class Misses:
    """Tolerance misses of known-imprecise quantities, noted during a test, reported at its end."""

    def __init__(self):
        self.seen: dict = {}

    @contextlib.contextmanager
    def expect(self, reason: Optional[str]):
        """Run the checks inside; with a known `reason`, note a tolerance miss instead of failing."""
        if reason is None:
            yield
            return
        try:
            yield
        except AssertionError as e:
            self.seen.setdefault(reason, []).append(str(e).splitlines()[0])

    def skip_if_any(self) -> None:
        if self.seen:
            reason, found = next(iter(self.seen.items()))
            pytest.skip(f"{reason}; {len(found)} miss(es) here, e.g. {found[0]}")
