"""Statistics that use the pairing interleaved rounds create, and the decision rule of a pick.

Rounds are interleaved: in round i every candidate runs once, one after another, so a slow spell
on a shared machine lands on both. A candidate is compared with another by the ratio of their
times *in the same round*, r_i = t_other,i / t_this,i, which cancels the drift the two share.
The estimate is the Hodges-Lehmann estimate of the ratio (the median of the pairwise means of the
log r_i) and its confidence interval comes from the Wilcoxon signed-rank test. That test assumes
the log r_i are symmetric about the true ratio, which holds when the two samples of a round carry
independent noise of the same kind (their difference is then symmetric); it is about 1.5 times as
efficient as the sign test here, which needs no symmetry: on recorded rounds of two processes of
one configuration made 5% apart, the sign test found the difference in 20% of 25-round races, this
one in 100% (tests/test_stats.py).

Minimum rounds: with n paired rounds, the widest interval, [smallest, largest pairwise mean],
misses with probability 2 x 0.5^n (all n ratios on one side). For 95% that needs n >= 6
(3.1%; at n = 5 it is 6.3%): with fewer rounds no decision can be more than provisional
(MIN_ROUNDS).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Mapping, Optional, Sequence

import numpy as np

CONFIDENCE = 0.95


@functools.lru_cache(maxsize=None)
def signed_rank_critical(n: int, confidence: float = CONFIDENCE) -> Optional[int]:
    """The largest t with P(T <= t) <= (1 - confidence) / 2, T the Wilcoxon signed-rank statistic
    of n pairs under the null (exact, by counting subsets of {1..n} by their sum); None if even
    t = 0 is too likely (n too small)."""
    alpha = (1 - confidence) / 2
    total = n * (n + 1) // 2
    counts = [1] + [0] * total  # counts[t]: subsets of {1..k} summing to t
    for k in range(1, n + 1):
        for t in range(total, k - 1, -1):
            counts[t] += counts[t - k]
    cumulative, best = 0, None
    for t, c in enumerate(counts):
        cumulative += c
        if cumulative / 2**n > alpha:
            break
        best = t
    return best


def min_rounds(confidence: float = CONFIDENCE) -> int:
    n = 1
    while signed_rank_critical(n, confidence) is None:
        n += 1
    return n


MIN_ROUNDS = min_rounds()


@dataclasses.dataclass(frozen=True)
class Ratio:
    """The time ratio other / this from paired rounds (Hodges-Lehmann), with its CI."""

    median: float
    low: float
    high: float
    rounds: int

    @property
    def decided(self) -> bool:
        """Enough rounds for an interval at all (see MIN_ROUNDS)."""
        return math.isfinite(self.high) and self.low > 0

    @property
    def other_slower(self) -> bool:
        """The other is slower, with confidence: the whole interval lies above 1."""
        return self.low > 1.0

    @property
    def other_faster(self) -> bool:
        return self.high < 1.0

    def speedup(self) -> tuple:
        """(median, low, high) of how many times faster the other is (1 / ratio)."""
        inv = lambda v: 1 / v if v > 0 else math.inf  # noqa: E731
        return inv(self.median), inv(self.high), inv(self.low)


def paired(a: Mapping[int, float], b: Mapping[int, float]) -> tuple:
    """Times of the rounds both took part in, as two aligned arrays."""
    rounds = sorted(set(a) & set(b))
    return np.array([a[r] for r in rounds], float), np.array([b[r] for r in rounds], float)


def ratio(this: Mapping[int, float], other: Mapping[int, float], confidence=CONFIDENCE) -> Ratio:
    """The ratio other / this over shared rounds: the Hodges-Lehmann estimate from the per-round
    log ratios, with the Wilcoxon signed-rank interval (see the module docstring).

    `this` and `other` map round number -> seconds.
    """
    x, y = paired(this, other)
    n = len(x)
    if n == 0:
        return Ratio(math.nan, 0.0, math.inf, 0)
    d = np.log(y / x)
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2)  # the n(n+1)/2 pairwise means, each log ratio with itself
    estimate = float(np.exp(np.median(walsh)))
    c = signed_rank_critical(n, confidence)
    if c is None:
        return Ratio(estimate, 0.0, math.inf, n)
    return Ratio(estimate, float(np.exp(walsh[c])), float(np.exp(walsh[len(walsh) - 1 - c])), n)


@dataclasses.dataclass(frozen=True)
class Decision:
    winner: str
    fastest: str
    clearly_ahead: bool
    provisional: bool
    runner_up: Optional[str]
    versus_runner_up: Optional[Ratio]
    tied: tuple
    text: str


def decide(
    samples: Mapping[str, Mapping[int, float]],
    *,
    order: Mapping[str, float],
    complexity: Mapping[str, float],
    confidence: float = CONFIDENCE,
    margin: float = 0.0,
) -> Decision:
    """The winner among candidates with paired round times.

    `order`: a score per candidate, lower is faster (e.g. the median ratio to a reference); the
    fastest is the lowest. It is *clearly ahead* if the runner-up's time ratio to it lies above
    1 + `margin` with `confidence`; otherwise every candidate whose interval against the fastest
    reaches 1 + margin is tied with it, and the simplest of those (lowest `complexity`; among
    equally simple ones, such as two serving engines, the faster by `order`) wins. `margin` is
    the difference too small to matter (see picker.TIE_MARGIN). Fewer paired
    rounds than MIN_ROUNDS make the decision provisional.
    """
    names = sorted(samples, key=lambda n: (order[n], n))
    if not names:
        raise ValueError("No candidate has timings to decide from.")
    fastest = names[0]
    if len(names) == 1:
        return Decision(fastest, fastest, True, False, None, None, (fastest,), "the only candidate")
    versus = {n: ratio(samples[fastest], samples[n], confidence) for n in names[1:]}
    runner = names[1]
    vs = versus[runner]
    level = f"{int(round(confidence * 100))}% CI"
    provisional = not vs.decided
    if vs.low > 1.0 + margin:
        text = (
            f"{fastest} is clearly ahead: the runner-up {runner} takes {vs.median:.3f}x its time "
            f"({vs.low:.3f}-{vs.high:.3f}, {level}, {vs.rounds} paired rounds)"
        )
        return Decision(fastest, fastest, True, provisional, runner, vs, (fastest,), text)
    tied = tuple([fastest] + [n for n in names[1:] if not versus[n].low > 1.0 + margin])
    winner = min(tied, key=lambda n: (complexity.get(n, 99), order[n], n))
    if provisional:
        text = (
            f"provisional: {vs.rounds} paired rounds, fewer than the {MIN_ROUNDS} a {level} "
            f"needs; fastest so far {fastest}; picking the simplest of {', '.join(tied)}: {winner}"
        )
    else:
        text = (
            f"a tie within noise: {runner} / {fastest} time ratio {vs.median:.3f} "
            f"({vs.low:.3f}-{vs.high:.3f}, {level}, {vs.rounds} paired rounds: within "
            f"{margin:.0%} of 1); "
            f"tied: {', '.join(tied)}; picking the simplest, {winner}"
        )
    return Decision(winner, fastest, False, provisional, runner, vs, tied, text)


def quartile_throughput(images: int, q1: float, median: float, q3: float) -> tuple:
    """(median, lower quartile, upper quartile) images/s from the quartiles of the seconds per
    step: the slower quartile of time is the lower quartile of throughput."""
    return images / median, images / q3, images / q1


def throughput(seconds: Sequence[float], images: int) -> dict:
    """Median images/s and the interquartile range, from per-call seconds."""
    s = np.asarray(seconds, float)
    q1, median, q3 = np.percentile(s, [25, 50, 75])
    rate, low, high = quartile_throughput(images, q1, median, q3)
    return {
        "images_per_sec": rate,
        "q1_images_per_sec": low,
        "q3_images_per_sec": high,
        "median_s": float(median),
        "iqr_s": float(q3 - q1),
        "rounds": int(len(s)),
    }
