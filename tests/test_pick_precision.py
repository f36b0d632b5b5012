"""Precision as an axis of `blocks.pick`: the candidates it plans, what it refuses without a
worker, the tie rule, the cache key and `variant="auto"` (fast); then real picks whose reduced
precision is held to an accuracy budget (a `noisy` test variant beyond it, a budget of 0, the
user's weights and images with and without labels on the command line).

Only TensorFlow executions are raced here: a serving engine's precision is tested apart.
"""

import json
import re
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

import blocks
from blocks import cli, cpu
from blocks.measure import accuracy, budget, devices, final, picker, render, stats, workers
from blocks.measure.candidates import Run
from blocks.measure.result import PickResult
from blocks.measure.workload import Accuracy, Config, SearchSpace, Workload, grid
from tests.helpers import numpy_resnet
from tests.test_pick import (  # noqa: F401  (autouse fixtures: private cache, tag, short samples)
    AUTO,
    BUILT_IN,
    ROOMY_S,
    ROOT,
    TINY,
    _row,
    _store,
    faulty_env,
    private_cache_and_tag,
    short_samples,
)

BF16 = "mixed_bfloat16"
SPACE = dict(variants=["subclassed", "functional"], executions=["graph"], runtimes=["default"])


# --- the plan, static refusals, the tie rule ---------------------------------------------------


def test_plan_names_each_precision_but_the_workloads_own():
    workload = Workload(**TINY)
    configs, _ = picker.plan(workload, SearchSpace(**SPACE, precisions=["float32", BF16]))
    assert [c.label for c in configs] == [
        "subclassed · graph · default",
        f"subclassed · graph · default · {BF16}",
        "functional · graph · default",
        f"functional · graph · default · {BF16}",
    ]
    for c in configs:
        assert Config.parse(c.label) == c and Config.from_json(c.to_json()) == c
    assert "precision" not in configs[0].to_json()
    assert configs[1].to_json()["precision"] == BF16
    assert workload.at(configs[0]) is workload and workload.at(configs[1]).dtype_policy == BF16
    # A bfloat16 workload: float32 is then the other precision, and named.
    bf16 = Workload(dtype_policy=BF16, **TINY)
    configs, _ = picker.plan(bf16, SearchSpace(**SPACE, precisions=["float32", BF16]))
    assert configs[0].label == "subclassed · graph · default"
    assert configs[1].label == "subclassed · graph · default · float32"
    # Without precisions, the workload's own alone, labelled as before the axis.
    configs, _ = picker.plan(workload, SearchSpace(**SPACE))
    assert all(c.precision is None for c in configs) and len(configs) == 2


def _refused(monkeypatch, flags, precisions):
    """{label: (status, reason)} after a run's static refusals on a CPU with `flags`."""
    monkeypatch.setattr(cpu, "cpu_flags", lambda: set(flags))
    workload = Workload(**TINY)
    configs, equal = picker.plan(workload, SearchSpace(**SPACE, precisions=precisions))
    run = Run(None, workload, configs, equal, budget.Clock(60, None))
    run.refuse_statically()
    return {c.config.label: (c.status, c.reason) for c in run.candidates}


def test_a_cpu_without_native_bfloat16_refuses_it_in_one_line(monkeypatch):
    got = _refused(monkeypatch, {"sse4_2", "avx", "avx2", "fma"}, ["float32", BF16])
    name = devices.describe("CPU:0")["name"]
    for label, (status, reason) in got.items():
        if label.endswith(BF16):
            assert status == "could not run"
            assert reason == f"{BF16}: {name} has no AVX512_BF16 or AMX: bfloat16 would be emulated"
        else:
            assert (status, reason) == ("pending", None)
    # The same candidates on a CPU that has it are left to the workers.
    got = _refused(monkeypatch, {"avx2", "avx512f", "avx512_bf16"}, ["float32", BF16])
    assert {s for s, _ in got.values()} == {"pending"}


def test_float16_on_the_cpu_is_refused_in_one_line(monkeypatch):
    got = _refused(monkeypatch, {"avx2", "avx512_bf16"}, ["float32", "mixed_float16"])
    refused = {k: v for k, v in got.items() if k.endswith("mixed_float16")}
    assert len(refused) == 2
    for status, reason in refused.values():
        assert status == "could not run" and "\n" not in reason
        assert reason.startswith("mixed_float16: float16 on the CPU is emulated")


def test_a_reduced_precision_is_never_simpler_than_float32():
    """At a tie the higher precision wins: every float32 configuration is simpler than every
    reduced one, whatever variant, execution and runtime each has."""
    tf_executions = ["graph", "eager", "xla"]
    runtimes = ["default", "onednn", "no-onednn"]
    full = grid(BUILT_IN, tf_executions, runtimes, precisions=[None, "float32"])
    reduced = grid(BUILT_IN, tf_executions, runtimes, precisions=["mixed_float16", BF16])
    assert max(map(final.complexity, full)) < min(map(final.complexity, reduced))
    # And in a decision: bfloat16 2% faster (inside the tie margin) loses to float32.
    f32, bf16 = Config("folded"), Config("subclassed", precision=BF16)
    rounds = {f32.label: {r: 1.02 for r in range(12)}, bf16.label: {r: 1.0 for r in range(12)}}
    decision = stats.decide(
        rounds,
        order={f32.label: 1.02, bf16.label: 1.0},
        complexity={c.label: final.complexity(c) for c in (f32, bf16)},
        margin=final.TIE_MARGIN,
    )
    assert decision.fastest == bf16.label and decision.winner == f32.label


# --- the cache key and variant="auto" ----------------------------------------------------------


def _images(path, n=4, size=8, seed=0):
    np.savez(path, images=np.random.default_rng(seed).standard_normal((n, size, size, 3), "f4"))
    return str(path)


def test_the_key_holds_the_budget_and_the_files_contents_only_for_a_reduced_precision(tmp_path):
    workload = Workload(**TINY)
    f32, _ = picker.plan(workload, SearchSpace(**SPACE))
    both, _ = picker.plan(workload, SearchSpace(**SPACE, precisions=["float32", BF16]))
    images = _images(tmp_path / "a.npz")
    assert "accuracy" not in picker.make_key(workload, f32, Accuracy(images=images))
    key = picker.make_key(workload, both, Accuracy(images=images))
    assert key["accuracy"]["max_top1_disagreement"] == 0.01
    assert key != picker.make_key(workload, both, Accuracy(images=images, max_logit_error=0.1))
    assert key != picker.make_key(workload, both, Accuracy(images=images, max_top1_disagreement=0))
    assert key != picker.make_key(workload, both)  # random images
    # The same contents under another name are the same check; other contents under the same
    # name are another.
    shutil.copy(images, tmp_path / "b.npz")
    assert key == picker.make_key(workload, both, Accuracy(images=str(tmp_path / "b.npz")))
    _images(images, seed=1)
    assert key != picker.make_key(workload, both, Accuracy(images=images))


def _compute_dtype(model) -> str:
    """What the stem's convolution computes in (the model's own dtype is its images')."""
    return dict(blocks.weights.leaf_layers(model))["stem.conv"].compute_dtype


def test_auto_takes_a_cached_reduced_precision_only_when_asked():
    # A decided pick in the private cache (the lookup rule is under test, not a measurement).
    space = dict(variants=BUILT_IN, executions=["graph"], precisions=["float32", BF16])
    _store(Config("functional", "graph", "default", precision=BF16), **AUTO, **space)
    with pytest.warns(blocks.AutoVariantWarning, match=r"no cached pick .*using 'subclassed'"):
        model = blocks.resnet18("auto", input_shape=(16, 16, 3), dtype_policy="float32")
    assert model.variant == "subclassed" and _compute_dtype(model) == "float32"
    with warnings.catch_warnings():
        warnings.simplefilter("error", blocks.AutoVariantWarning)
        model = blocks.resnet18(
            "auto", input_shape=(16, 16, 3), dtype_policy="float32", precisions=("float32", BF16)
        )
    assert model.variant == "functional" and model.picked.precision == BF16
    assert _compute_dtype(model) == "bfloat16"
    with pytest.raises(ValueError, match=r"^Invalid precisions\. Only variant=\"auto\".*$") as e:
        blocks.resnet18("subclassed", precisions=("float32", BF16))
    assert "\n" not in str(e.value)


# --- the command line's refusals ---------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--precisions", "float32,bf16"], "argument --precisions: unknown 'bf16'; expected some"),
        (["--max-top1-disagreement", "2"], "expected a share such as 0.01 or 1%, got '2'"),
        (["--max-top1-disagreement=-1%"], "expected a share such as 0.01 or 1%, got '-1%'"),
        (["--max-logit-error", "-1"], "argument --max-logit-error: expected a number >= 0"),
        (["--max-logit-error", "inf"], "argument --max-logit-error: expected a number >= 0"),
    ],
)
def test_cli_refuses_a_bad_precision_or_budget_before_tensorflow_loads(args, message):
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "blocks", "pick", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 2 and message in out.stderr, out.stderr[-800:]
    assert " tensorflow" not in out.stderr, "TensorFlow was imported for a usage error"


def _refuse_pool(monkeypatch):
    def pool(*args, **kwargs):
        raise RuntimeError("a worker pool was started for a file that should have been refused")

    monkeypatch.setattr(workers, "Pool", pool)


def _text(path):
    path.write_text("these are not weights\n")
    return str(path)


@pytest.mark.parametrize(
    "option, write, words",
    [
        ("--images", lambda p: _images(p, size=16), "Expected 'images' of shape (n, 8, 8, 3)"),
        ("--weights", _text, "a text file, not a weights file (it starts with"),
    ],
    ids=["images of another size", "weights that are text"],
)
def test_cli_refuses_the_users_files_before_anything_is_timed(
    option, write, words, tmp_path, monkeypatch, capsys
):
    def pool(*args, **kwargs):
        raise RuntimeError("a worker pool was started for a file that should have been refused")

    monkeypatch.setattr(workers, "Pool", pool)
    path = write(tmp_path / "mine.npz")
    args = ["pick", "--batch-size", "2", "--image-size", "8", "--precisions", BF16]
    parsed = cli.build_parser().parse_args([*args, option, path, "--budget-s", "30"])
    assert cli.cmd_pick(parsed) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and repr(path) in err and words in err, err


def test_a_logit_error_bound_that_is_not_finite_is_refused_at_once():
    """Once taken, it failed the pick after every candidate compiled (over_budget refused it)."""
    with pytest.raises(ValueError, match=r"^Invalid max_logit_error\. Expected a finite number"):
        Accuracy(max_logit_error=float("inf"))


# --- real picks --------------------------------------------------------------------------------


def _noisy_bf16_logit_error(images, batch) -> float:
    """`noisy` in bfloat16 with the seeded weights against the NumPy float64 network: the
    largest over images of max_j |z_ij - r_ij| / max_j |r_ij|, by hand."""
    size = images.shape[1]
    seeded = blocks.resnet18("subclassed", input_shape=(size, size, 3), seed=0)
    weights = blocks.export_weights(seeded)
    model = blocks.resnet18("noisy", input_shape=(size, size, 3), dtype_policy=BF16)
    blocks.import_weights(model, weights)
    # The noise has the shape of a batch: the worker's batches, so the worker's noise.
    z = [model(images[i : i + batch], training=False) for i in range(0, len(images), batch)]
    z = np.concatenate(z).astype(np.float64)
    params = {k: np.float64(v) for k, v in weights.items()}
    r, _ = numpy_resnet.resnet_forward(params, np.float64(images), "seed")
    return float(np.max(np.max(np.abs(z - r), axis=1) / np.max(np.abs(r), axis=1)))


@pytest.mark.exhaustive  # a whole pick with real workers and a bfloat16 accuracy check (~30 s)
def test_a_candidate_beyond_the_logit_error_budget_is_disqualified_with_its_figure():
    # A loose top-1 budget: random images on seeded weights have small top-1 margins, and the
    # noise (0.11 of the largest logit) changes ~5% of them; the logit error is under test.
    result = picker.pick(
        variants=["subclassed", "noisy"],
        executions=["graph"],
        runtimes=["default"],
        precisions=[BF16],
        max_top1_disagreement=0.25,
        max_logit_error=0.05,
        budget_s=ROOMY_S,
        **TINY,
    )
    noisy = _row(result, f"noisy · graph · default · {BF16}")
    error = noisy.accuracy["logit_error"]
    assert noisy.status == "disqualified" and noisy.rounds == 0  # it raced no round
    assert noisy.reason == f"accuracy: logit error {error:.2e} > 5.00e-02 allowed"
    # The figure is the network's: the same model against the NumPy float64 network, in the
    # worker's batches (bfloat16's roundoff differs between graph and eager a little).
    images = accuracy.default_images("seed", TINY["image_size"])
    assert noisy.accuracy["images"] == len(images)
    assert error == pytest.approx(_noisy_bf16_logit_error(images, TINY["batch_size"]), rel=0.1)
    kept = _row(result, f"subclassed · graph · default · {BF16}")
    assert kept.status == "winner" and result.winner_label == kept.label
    assert 0 < kept.accuracy["logit_error"] < 0.05
    assert 0.75 <= kept.accuracy["top1_agreement"] <= 1.0
    assert kept.accuracy["accuracy"] is None and kept.accuracy["reference_accuracy"] is None
    reference = _row(result, "subclassed · graph · default")
    assert reference.status == "reference" and reference.accuracy is None
    assert result.accuracy["indicative"] and not result.accuracy["labels"]
    assert result.accuracy["max_logit_error"] == 0.05
    assert f'dtype_policy="{BF16}"' in " ".join(result.apply["python"])


@pytest.mark.exhaustive  # a whole pick with real workers (~30 s)
def test_a_budget_of_zero_leaves_float32_only():
    result = picker.pick(
        variants=["subclassed"],
        executions=["graph"],
        runtimes=["default"],
        precisions=["float32", BF16],
        max_top1_disagreement=0,
        max_logit_error=0,
        budget_s=ROOMY_S,
        **TINY,
    )
    bf16 = [r for r in result.ranking if r.label.endswith(BF16)]
    assert len(bf16) == 1
    for row in bf16:
        assert row.status == "disqualified", (row.status, row.reason)
        assert re.fullmatch(
            r"accuracy: (top-1 disagreement .* > 0% allowed|logit error \S+ > 0\.00e\+00 allowed)",
            row.reason,
        ), row.reason
        assert row.accuracy["logit_error"] > 0
    assert result.winner_label == "subclassed · graph · default"
    assert result.winner_config.precision is None
    assert _row(result, result.winner_label).accuracy is None


def _users_files(tmp_path, with_labels: bool) -> tuple:
    """(weights path, images path, the float64 reference's accuracy or None): weights of another
    seed than the default's, 32 images, and labels that the NumPy float64 network gets right on
    the first 24 and wrong on the last 8 (so the reference's accuracy is 75% by construction)."""
    size = TINY["image_size"]
    model = blocks.resnet18("subclassed", input_shape=(size, size, 3), seed=7)
    weights = str(tmp_path / "mine.npz")
    blocks.save_weights(model, weights)
    images = np.random.default_rng(3).standard_normal((32, size, size, 3), dtype=np.float32)
    params = {k: np.float64(v) for k, v in blocks.export_weights(model).items()}
    logits, _ = numpy_resnet.resnet_forward(params, np.float64(images), "seed")
    labels = np.argmax(logits, axis=1)
    labels[24:] = (labels[24:] + 1) % logits.shape[1]
    path = tmp_path / "images.npz"
    np.savez(path, images=images, **({"labels": labels} if with_labels else {}))
    return weights, str(path), (0.75 if with_labels else None)


def _cli_pick(weights, images):
    """`pick --json` racing bfloat16 alone against the float32 reference, on the user's files.
    The top-1 budget is loose: 32 images on weights that classify nothing have small margins."""
    args = ["--batch-size", "2", "--image-size", "8", "--variants", "subclassed"]
    args += ["--executions", "graph", "--runtimes", "default", "--precisions", BF16]
    args += ["--max-top1-disagreement", "50%", "--weights", weights, "--images", images]
    out = subprocess.run(
        [sys.executable, "-m", "blocks", "pick", *args, "--budget-s", "40", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=faulty_env(),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def _check_users_pick(data, weights, images, reference_accuracy, capsys) -> str:
    """The JSON's accuracy figures, and the text `pick` prints for the same result."""
    row = next(r for r in data["ranking"] if r["label"].endswith(BF16))
    assert row["status"] == "winner", (row["status"], row["reason"])
    cost = row["accuracy"]
    assert cost["images"] == 32 and cost["reference_accuracy"] == reference_accuracy
    if reference_accuracy is None:
        assert cost["accuracy"] is None
    else:  # every image whose top-1 class moved can move the accuracy by 1/32, no more
        assert abs(cost["accuracy"] - 0.75) <= 1 - cost["top1_agreement"] + 1e-9
    a = data["accuracy"]
    assert (a["weights"], a["images"]) == (weights, f"32 images of {images}")
    assert a["indicative"] is False
    assert a["labels"] is (reference_accuracy is not None)
    assert a["reference_accuracy"] == reference_accuracy
    render.print_pick(PickResult.from_json(data), verbose=False)
    text = capsys.readouterr().out
    header = next(ln for ln in text.splitlines() if ln.startswith("rank"))
    assert header.endswith("top-1, logit err")  # the cost column
    assert f"{cost['top1_agreement']:.1%} {cost['logit_error']:.1e}" in text
    assert "accuracy cost: " in text and "indicative only" not in text
    return text


@pytest.mark.exhaustive  # a command line's whole pick with real workers (~35 s)
def test_the_users_weights_and_labelled_images_give_both_accuracies(tmp_path, capsys):
    weights, images, reference = _users_files(tmp_path, with_labels=True)
    data = _cli_pick(weights, images)
    text = _check_users_pick(data, weights, images, reference, capsys)
    assert "reference accuracy 75.0%" in text
    won = next(r for r in data["ranking"] if r["status"] == "winner")
    assert f"; accuracy {won['accuracy']['accuracy']:.1%}" in text


@pytest.mark.exhaustive  # a command line's whole pick with real workers (~35 s)
def test_the_users_images_without_labels_give_no_accuracy(tmp_path, capsys):
    weights, images, reference = _users_files(tmp_path, with_labels=False)
    data = _cli_pick(weights, images)
    text = _check_users_pick(data, weights, images, reference, capsys)
    assert "reference accuracy" not in text and "; accuracy " not in text
