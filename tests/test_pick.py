"""`blocks.pick` and its cache: ranking, tie detection, the cache file, `variant="auto"`, the CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import blocks
from blocks.measure import cache, picker, timing

TINY = dict(batch_size=2, input_shape=(8, 8, 3), budget_s=0.5)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own cache file."""
    path = tmp_path / "cache" / "picks.json"
    monkeypatch.setenv(cache.ENV_VAR, str(path))
    return path


# --- deciding -------------------------------------------------------------------------------


def _samples(median, spread, n=30, seed=0):
    rng = np.random.default_rng(seed)
    return list(median * (1 + spread * rng.standard_normal(n)))


def test_clear_winner():
    samples = {"subclassed": _samples(1.0, 0.01), "xla": _samples(0.8, 0.01, seed=1)}
    winner, fastest, clear, ci, why = picker.decide(samples, complexity={"subclassed": 0, "xla": 3})
    assert (winner, fastest, clear) == ("xla", "xla", True)
    assert 1.2 < ci[0] < 1.25 < ci[1] < 1.3
    assert "clearly ahead" in why


def test_identical_timings_are_a_tie_won_by_the_simplest():
    same = _samples(1.0, 0.02)
    samples = {"xla": same, "functional": list(same), "subclassed": list(same)}
    winner, _, clear, ci, why = picker.decide(
        samples, complexity={"subclassed": 0, "functional": 1, "xla": 3}
    )
    assert not clear and winner == "subclassed"
    assert ci[0] <= 1.0 <= ci[1]
    assert "tie" in why and "simplest, subclassed" in why


def test_noisy_overlapping_timings_are_a_tie():
    samples = {"xla": _samples(0.98, 0.15, seed=3), "subclassed": _samples(1.0, 0.15, seed=4)}
    winner, fastest, clear, ci, _ = picker.decide(samples, complexity={"subclassed": 0, "xla": 3})
    assert not clear and winner == "subclassed"
    assert ci[0] < 1.0 < ci[1]


def test_small_but_consistent_gap_is_not_a_tie():
    """A fixed 3% gap with tight timings is real: no fixed percentage threshold decides."""
    samples = {"subclassed": _samples(1.0, 0.002), "functional": _samples(0.97, 0.002, seed=5)}
    winner, _, clear, _, _ = picker.decide(samples, complexity={"subclassed": 0, "functional": 1})
    assert clear and winner == "functional"


def test_notch_interval_from_summary_statistics():
    fast = {"median": 0.8, "iqr": 0.01, "rounds": 25}
    slow = {"median": 1.0, "iqr": 0.01, "rounds": 25}
    lo, hi = picker.notch_ratio_ci(fast, slow)
    assert 1.2 < lo < 1.25 < hi < 1.3
    noisy = {"median": 1.0, "iqr": 0.5, "rounds": 5}
    lo, hi = picker.notch_ratio_ci(fast, noisy)
    assert lo < 1.0 < hi


# --- measuring ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    os.environ[cache.ENV_VAR] = str(tmp_path_factory.mktemp("c") / "picks.json")
    try:
        return picker.pick(**TINY, use_cache=False)
    finally:
        del os.environ[cache.ENV_VAR]


def test_every_registered_variant_is_ranked(tiny_result):
    assert sorted(r.variant for r in tiny_result.ranking) == sorted(blocks.VARIANTS)
    for r in tiny_result.ranking:
        if r.error is None:
            assert r.images_per_sec > 0 and r.rounds >= picker.MIN_ROUNDS
            assert r.q1_images_per_sec <= r.images_per_sec <= r.q3_images_per_sec
            assert len(r.samples_s) == r.rounds
        else:
            assert r.images_per_sec is None and r.variant in r.error or "nchw" in r.error
    ran = [r for r in tiny_result.ranking if r.error is None]
    assert [r.images_per_sec for r in ran] == sorted((r.images_per_sec for r in ran), reverse=True)
    assert tiny_result.winner in {r.variant for r in ran}
    ref = next(r for r in ran if r.variant == "subclassed")
    assert ref.speedup_vs_subclassed == 1.0


def test_a_variant_that_cannot_run_is_ranked_with_its_reason(monkeypatch):
    real = timing.prepare

    def failing(workload, **kw):
        if workload.variant == "functional":
            raise timing.Unsupported("functional: out of memory on CPU:0 (simulated)")
        return real(workload, **kw)

    monkeypatch.setattr(timing, "prepare", failing)
    result = picker.pick(variants=["subclassed", "functional"], **TINY)
    bad = next(r for r in result.ranking if r.variant == "functional")
    assert bad.error == "functional: out of memory on CPU:0 (simulated)"
    assert result.ranking[-1] is bad and result.winner == "subclassed"


def test_no_variant_can_run(monkeypatch):
    def failing(workload, **kw):
        raise timing.Unsupported(f"{workload.variant}: no kernel (simulated)")

    monkeypatch.setattr(timing, "prepare", failing)
    with pytest.raises(
        picker.PickError, match=r"No variant could run on CPU:0\. subclassed: .*no kernel"
    ):
        picker.pick(variants=["subclassed", "xla"], **TINY)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(device="TPU:0"),
            r"Unknown device\. Expected one of \[.*'CPU:0'.*\] \(the devices TensorFlow .* lists here\); Received: device='TPU:0'",
        ),
        (
            dict(mode="predict"),
            r"Unknown mode\. Expected one of \['inference', 'train'\]; Received: mode='predict'",
        ),
        (dict(dtype_policy="float16"), r"Received: dtype_policy='float16'"),
        (
            dict(batch_size=0),
            r"Invalid batch_size\. Expected a positive int; Received: batch_size=0",
        ),
        (dict(batch_size=-4), r"Received: batch_size=-4"),
        (dict(variants=["fast"]), r"Unknown variant.*Received: variant='fast'"),
        (dict(arch="resnet"), r"Unknown arch"),
        (dict(budget_s=0), r"Invalid budget_s"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        picker.pick(**kwargs)


# --- the cache ------------------------------------------------------------------------------


def _result(winner="functional"):
    return picker.PickResult(
        key={"k": 1},
        ranking=[picker.Ranked(winner, 10.0, 9.0, 11.0, 1.1, 5)],
        winner=winner,
        fastest=winner,
        clearly_ahead=True,
        ratio_ci=(1.1, 1.2),
        decision="test",
        measured_at="2026-01-01T00:00:00+00:00",
    )


def test_cache_round_trip(private_cache):
    result = picker.pick(variants=["subclassed", "functional"], **TINY)
    assert private_cache.exists()
    again = picker.cached(
        variants=["subclassed", "functional"], **{k: v for k, v in TINY.items() if k != "budget_s"}
    )
    assert again is not None and again.source == "cache"
    assert (
        again.winner == result.winner and again.to_json()["ranking"] == result.to_json()["ranking"]
    )
    # Another configuration is another key.
    assert (
        picker.cached(variants=["subclassed", "functional"], batch_size=3, input_shape=(8, 8, 3))
        is None
    )


def test_cache_key_names_device_versions_and_configuration():
    key = picker.make_key(
        "CPU:0",
        mode="train",
        batch_size=8,
        dtype_policy="float32",
        arch="seed",
        input_shape=(32, 32, 3),
        variants=["xla", "functional"],
    )
    assert key["device"]["kind"] == "CPU" and key["device"]["name"]
    assert key["tf"] == blocks.TF_VERSION and key["keras"] == blocks.KERAS_VERSION
    assert (key["mode"], key["batch_size"], key["arch"], key["input_shape"]) == (
        "train",
        8,
        "seed",
        [32, 32, 3],
    )
    assert key["variants"] == ["functional", "xla"]


# --- variant="auto" -------------------------------------------------------------------------


def test_auto_uses_the_cached_winner():
    key = picker.make_key(
        picker.default_device(),
        mode="inference",
        batch_size=64,
        dtype_policy="float32",
        arch="seed",
        input_shape=(16, 16, 3),
        variants=list(blocks.VARIANTS),
    )
    cache.store(key, _result("functional").to_json())
    model = blocks.resnet18("auto", input_shape=(16, 16, 3), dtype_policy="float32")
    assert model.variant == "functional"


def test_auto_on_a_miss_warns_and_uses_the_default():
    with pytest.warns(
        blocks.AutoVariantWarning,
        match=r"no cached pick .*using 'subclassed'.*python -m blocks pick --arch seed --image-size 16",
    ):
        model = blocks.resnet18("auto", input_shape=(16, 16, 3), dtype_policy="float32")
    assert model.variant == "subclassed"


def test_auto_on_a_miss_can_measure_first(monkeypatch):
    calls = []

    def fake_pick(**options):
        calls.append(options)
        return _result("functional")

    monkeypatch.setattr(picker, "pick", fake_pick)
    model = blocks.resnet18(
        "auto", input_shape=(16, 16, 3), dtype_policy="float32", pick_on_miss=True
    )
    assert model.variant == "functional"
    assert calls and calls[0]["batch_size"] == 64 and calls[0]["mode"] == "inference"


def test_auto_survives_a_corrupt_cache(private_cache):
    private_cache.parent.mkdir(parents=True)
    private_cache.write_bytes(b"\x00\xff garbage")
    with pytest.warns(blocks.AutoVariantWarning):
        model = blocks.resnet18("auto", input_shape=(16, 16, 3), dtype_policy="float32")
    assert model.variant == "subclassed"


# --- the command line ------------------------------------------------------------------------


def _cli(*args, env_cache):
    env = dict(os.environ, **{cache.ENV_VAR: str(env_cache), "TF_CPP_MIN_LOG_LEVEL": "2"})
    return subprocess.run(
        [sys.executable, "-m", "blocks", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_cli_pick_json_then_cached(private_cache):
    args = [
        "pick",
        "--batch-size",
        "2",
        "--image-size",
        "8",
        "--budget-s",
        "0.5",
        "--variants",
        "subclassed,functional",
    ]
    first = _cli(*args, "--json", env_cache=private_cache)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["source"] == "measured" and {r["variant"] for r in data["ranking"]} == {
        "subclassed",
        "functional",
    }
    second = _cli(*args, env_cache=private_cache)
    assert second.returncode == 0, second.stderr
    assert "[cache," in second.stdout and f"winner: {data['winner']}" in second.stdout


def test_cli_bad_arguments(private_cache):
    bad = _cli("pick", "--mode", "predict", env_cache=private_cache)
    assert bad.returncode == 2 and "Unknown mode" in bad.stderr
    bad = _cli("pick", "--batch-size", "0", env_cache=private_cache)
    assert bad.returncode == 2 and "Received: batch_size=0" in bad.stderr


def _benchmark_row(variant, median, iqr, rounds=20, data=None):
    stats = {
        "median": median,
        "iqr": iqr,
        "q1": median - iqr / 2,
        "q3": median + iqr / 2,
        "rounds": rounds,
    }
    if data is not None:
        stats["data"] = data
    return {
        "group": "CPU:0 seed 32x32 inference float32 b64",
        "name": f"test_resnet18[{variant}]",
        "stats": stats,
        "extra_info": {
            "variant": variant,
            "mode": "inference",
            "batch_size": 64,
            "dtype_policy": "float32",
            "arch": "seed",
            "image_size": 32,
            "device": "CPU:0",
            "device_name": "test CPU",
            "tf_version": "x",
            "keras_version": "y",
            "compile_s": 1.0,
        },
    }


def test_pick_from_saved_benchmarks(tmp_path, private_cache):
    rows = [
        _benchmark_row("subclassed", 0.5, 0.01),
        _benchmark_row("xla", 0.4, 0.01),
        _benchmark_row("functional", 0.41, 0.2),
        _benchmark_row("subclassed[eager]", 2.0, 0.1),
    ]
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"benchmarks": rows}))
    result = picker.pick_from_benchmarks(path)
    assert [r.variant for r in result.ranking] == ["xla", "functional", "subclassed"]
    assert (
        result.winner == "functional" and not result.clearly_ahead
    )  # tie: xla vs noisy functional
    out = _cli("pick", "--from-json", str(path), env_cache=private_cache)
    assert out.returncode == 0 and "winner: functional" in out.stdout, out.stderr
    missing = _cli("pick", "--from-json", str(path), "--batch-size", "8", env_cache=private_cache)
    assert (
        missing.returncode == 2
        and "No benchmark in" in missing.stderr
        and "Groups in the file" in missing.stderr
    )


def test_pick_from_saved_benchmarks_with_raw_timings(tmp_path):
    fast = _samples(0.4, 0.01)
    slow = _samples(0.5, 0.01, seed=2)
    rows = [
        _benchmark_row("subclassed", float(np.median(slow)), 0.005, data=slow),
        _benchmark_row("xla", float(np.median(fast)), 0.004, data=fast),
    ]
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"benchmarks": rows}))
    result = picker.pick_from_benchmarks(path)
    assert result.winner == "xla" and result.clearly_ahead
    assert "from medians" not in result.decision
