"""The statistics of a pick, tested as statistics: interval coverage, the false-winner rate on
identical configurations and the power on a real difference, over many synthetic trials drawn
from noise recorded on this project's machines (tests/data/noise.json, bench/record_noise.py)."""

import itertools
import json
import math
import os

import numpy as np
import pytest

from blocks.measure import stats
from blocks.measure.picker import TIE_MARGIN

NOISE = os.path.join(os.path.dirname(__file__), "data", "noise.json")
TRIALS = 400
FINAL_ROUNDS = 25  # a default pick's final reaches 25-40 rounds on 2 cores


def test_minimum_rounds_and_critical_values():
    # n rounds: the widest interval misses with probability 2 x 0.5^n (all ratios on one side).
    assert stats.MIN_ROUNDS == 6
    assert 2 * 0.5**5 > 0.05 >= 2 * 0.5**6
    assert stats.signed_rank_critical(5) is None and stats.signed_rank_critical(6) == 0
    # The published table of the signed-rank test, two-sided 5%: n = 10 -> 8, 15 -> 25, 20 -> 52.
    assert [stats.signed_rank_critical(n) for n in (10, 15, 20)] == [8, 25, 52]


def test_ratio_is_the_hodges_lehmann_estimate_of_paired_ratios():
    this = {0: 1.0, 1: 2.0, 2: 1.0, 3: 4.0, 4: 1.0, 5: 1.0}
    other = {0: 1.1, 1: 2.4, 2: 1.3, 3: 4.0, 4: 1.2, 5: 1.05, 9: 7.0}  # round 9 is unpaired
    r = stats.ratio(this, other)
    d = np.log([1.1, 1.2, 1.3, 1.0, 1.2, 1.05])
    walsh = sorted((a + b) / 2 for k, a in enumerate(d) for b in d[k:])
    assert r.rounds == 6 and len(walsh) == 21
    assert r.median == pytest.approx(math.exp(np.median(walsh)))
    assert (r.low, r.high) == pytest.approx((1.0, 1.3))  # c = 0 at n = 6: the extremes
    assert not stats.ratio({0: 1.0}, {0: 2.0}).decided  # one round decides nothing


def test_drift_shared_by_a_round_cancels():
    """A slow spell that hits both entrants of a round leaves their ratio alone."""
    rng = np.random.default_rng(0)
    drift = np.exp(rng.normal(0, 0.5, 30))  # the machine: up to ~3x slower in a round
    this = {i: 1.0 * d for i, d in enumerate(drift)}
    other = {i: 1.1 * d for i, d in enumerate(drift)}
    r = stats.ratio(this, other)
    assert r.low == pytest.approx(1.1) and r.high == pytest.approx(1.1)


@pytest.mark.parametrize("n", [6, 10, 20])
def test_interval_covers_the_true_ratio(n):
    """Coverage of the interval for a known true ratio: each sample's log-noise skewed (Gumbel),
    the same kind in both, so that their difference is symmetric about the true log ratio."""
    rng = np.random.default_rng(n)
    true = 1.07
    covered = 0
    beta = 0.05
    trials = 2000  # the coverage estimate's standard deviation is then 0.5%
    for _ in range(trials):
        base = rng.lognormal(0, 0.3, n)
        this = base * np.exp(rng.gumbel(0, beta, n))
        other = base * true * np.exp(rng.gumbel(0, beta, n))
        r = stats.ratio(dict(enumerate(this)), dict(enumerate(other)))
        covered += r.low <= true <= r.high
    assert covered / trials >= 0.935, covered / trials  # 95% nominal, less 3 standard deviations


def _noise_runs():
    with open(NOISE, encoding="utf-8") as f:
        return json.load(f)["runs"]


def _runs():
    return [
        pytest.param(
            run, id=f"{run['workload']['mode']} b{run['workload']['batch_size']} {run['runtime']}"
        )
        for run in _noise_runs()
    ]


def _race_rate(times_a, times_b, n, scale, margin, rng, trials=TRIALS):
    """How often `decide` names a clear winner in synthetic races of n rounds, drawn without
    replacement from the recorded rounds (pairs kept: round i of a with round i of b)."""
    a, b = np.asarray(times_a), np.asarray(times_b) * scale
    clear = 0
    for _ in range(trials):
        rounds = rng.choice(len(a), n, replace=False)
        samples = {"a": dict(enumerate(a[rounds])), "b": dict(enumerate(b[rounds]))}
        order = {k: float(np.median(list(v.values()))) for k, v in samples.items()}
        d = stats.decide(samples, order=order, complexity={"a": 0, "b": 0}, margin=margin)
        clear += d.clearly_ahead
    return clear / trials


def _identical(times_a, times_b):
    """b's recorded times rescaled so that the median of the per-round ratios is exactly 1: the
    same model, with the noise, drift and pairing of the recording but no process offset."""
    a, b = np.asarray(times_a), np.asarray(times_b)
    return a, b / np.median(b / a)


@pytest.mark.parametrize("run", _runs())
@pytest.mark.parametrize("n", [15, 25])
def test_the_rule_calls_the_identical_model_a_tie(run, n):
    """The rule alone (no margin): a 'clear winner' between two copies of the same model in at
    most 5% of races."""
    rng = np.random.default_rng(n)
    for i, j in itertools.combinations(range(len(run["seconds"])), 2):
        a, b = _identical(run["seconds"][i], run["seconds"][j])
        rate = _race_rate(a, b, n, 1.0, 0.0, rng)
        assert rate <= 0.05, f"processes {i}, {j}: false winner in {rate:.1%} of races"


@pytest.mark.parametrize("run", _runs())
def test_the_rule_finds_a_real_five_percent_difference(run):
    rng = np.random.default_rng(3)
    for i, j in itertools.combinations(range(len(run["seconds"])), 2):
        a, b = _identical(run["seconds"][i], run["seconds"][j])
        rate = _race_rate(a, b, 25, 1.05, 0.0, rng)
        assert rate >= 0.9, f"processes {i}, {j}: found in only {rate:.1%} of races"


@pytest.mark.parametrize("run", _runs())
def test_separate_processes_of_one_configuration_tie_within_the_margin(run):
    """As recorded, process offsets included (up to 4% between two processes of one
    configuration): with pick's TIE_MARGIN it is a tie in at least 95% of races."""
    rng = np.random.default_rng(4)
    for i, j in itertools.combinations(range(len(run["seconds"])), 2):
        rate = _race_rate(run["seconds"][i], run["seconds"][j], FINAL_ROUNDS, 1.0, TIE_MARGIN, rng)
        assert rate <= 0.05, f"processes {i}, {j}: false winner in {rate:.1%} of races"


@pytest.mark.parametrize("run", _runs())
def test_a_difference_beyond_the_margin_is_a_win(run):
    """As recorded, process offsets included: a configuration 5% faster than the margin asks for
    is named the winner in at least 90% of races."""
    rng = np.random.default_rng(5)
    for i, j in itertools.combinations(range(len(run["seconds"])), 2):
        a, b = _identical(run["seconds"][i], run["seconds"][j])
        rate = _race_rate(a, b, 25, 1.05 + TIE_MARGIN, TIE_MARGIN, rng)
        assert rate >= 0.9, f"processes {i}, {j}: found in only {rate:.1%} of races"


def test_decide_clear_tie_and_provisional():
    fast = {i: 1.0 for i in range(10)}
    slow = {i: 1.2 for i in range(10)}
    same = {i: 1.0 + 0.01 * (-1) ** i for i in range(10)}
    cost = {"xla": 3, "subclassed": 0, "functional": 1}
    d = stats.decide(
        {"xla": fast, "subclassed": slow}, order={"xla": 1.0, "subclassed": 1.2}, complexity=cost
    )
    assert (d.winner, d.clearly_ahead, d.provisional) == ("xla", True, False)
    d = stats.decide(
        {"xla": fast, "functional": same, "subclassed": slow},
        order={"xla": 1.0, "functional": 1.0001, "subclassed": 1.2},
        complexity=cost,
        margin=0.03,
    )
    assert (d.winner, d.clearly_ahead) == ("functional", False) and d.tied == ("xla", "functional")
    assert "tie" in d.text and "simplest, functional" in d.text
    # Equally simple and tied (two serving engines): the faster measured wins, not the name.
    d = stats.decide(
        {"b-engine": fast, "a-engine": same},
        order={"b-engine": 1.0, "a-engine": 1.0001},
        complexity={"b-engine": 3, "a-engine": 3},
        margin=0.03,
    )
    assert d.tied == ("b-engine", "a-engine") and d.winner == "b-engine"
    short = {
        k: {i: v for i, v in s.items() if i < 4}
        for k, s in {"xla": fast, "subclassed": slow}.items()
    }
    d = stats.decide(short, order={"xla": 1.0, "subclassed": 1.2}, complexity=cost)
    assert d.provisional and not d.clearly_ahead and d.winner == "subclassed"
    assert "provisional: 4 paired rounds" in d.text
