"""Does a configuration compute the same function? Checked in the process that runs it.

Before a pick names a winner, its worker (its runtime, its execution) builds the configuration
afresh and compares it with the `subclassed` network computed in float64, on a small batch of the
workload's images and random weights: the inference outputs, and in train mode the weights after
one step of the very training step that was timed. The tolerances are the test suite's; the tests
import them from here.

A ReLU input within float32 roundoff of 0 lets float32 and float64 take different, equally valid
subgradients, which can move a whole network's gradients by ~1% on an unlucky draw: a training
check that fails on one draw is repeated on a second, and only a configuration that fails both is
disqualified (a real defect fails both).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from blocks.archs import ARCHS
from blocks.executions import is_engine
from blocks.measure import devices
from blocks.models import resnet18
from blocks.steps import compiled_step, train_step
from blocks.weights import export_weights, import_weights

# Largest relative error ||a - b|| / max(||b||, floor) against float64, per dtype policy: above
# the roundoff each precision accumulates (float32 gradients more than outputs, hence
# GRADIENT_FACTOR; half precision by its significant bits), below what a wrong path gives. The
# errors measured against each: docs/measuring.md, "Verification tolerances".
TOLERANCE = {"float32": 1e-5, "mixed_bfloat16": 3e-2, "mixed_float16": 3e-3}
GRADIENT_FACTOR = {"float32": 10.0, "mixed_bfloat16": 1.0, "mixed_float16": 1.0}
# Mixed-precision gradients (and updates), as one vector: half-precision activations normalised by
# a training-mode BN turn rounding into gradient noise wherever a channel's mean dwarfs its spread.
# These bounds catch a wrong or missing gradient path, not a precision difference (the spread
# measured on random blocks: docs/measuring.md, "Verification tolerances").
MIXED_GRADIENT_TOLERANCE = {"mixed_bfloat16": 0.4, "mixed_float16": 0.1}
# Per-key comparisons are floored at FAMILY_FLOOR x the largest norm of the family: roundoff in a
# quantity that cancels to ~0 in exact arithmetic is set by the magnitudes that cancel.
FAMILY_FLOOR = {"float32": 1e-2, "mixed_bfloat16": 1.0, "mixed_float16": 1.0}

VERIFY_BATCH = 4
DRAWS = (101, 202)


def rel_err(actual, desired, floor: float = 0.0) -> float:
    """||actual - desired|| / max(||desired||, floor); inf for NaN or inf anywhere."""
    a = np.asarray(actual, np.float64)
    b = np.asarray(desired, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape {a.shape} != reference shape {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("inf")
    denom = max(float(np.linalg.norm(b)), floor)
    diff = float(np.linalg.norm(a - b))
    if denom == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / denom


def random_weights(shapes: dict, rng: np.random.Generator) -> dict:
    """Non-trivial float32 values for {canonical key: shape}: BN far from identity, biases non-zero.

    Moving variances reach down to 0.05, so that a BN epsilon of 1e-3 and one of 1e-5 give outputs
    a few percent apart: a wrong epsilon anywhere shows in an inference output.
    """
    out = {}
    for key, shape in shapes.items():
        suffix = key.rsplit(".", 1)[1]
        if suffix == "kernel":
            v = rng.normal(0.0, np.sqrt(2.0 / int(np.prod(shape[:-1]))), shape)
        elif suffix == "gamma":
            v = rng.uniform(0.5, 1.5, shape)
        elif suffix == "moving_variance":
            v = rng.uniform(0.05, 2.0, shape)
        else:  # bias, beta, moving_mean
            v = rng.normal(0.0, 0.2, shape)
        out[key] = v.astype(np.float32)
    return out


def worst_per_key(actual: dict, desired: dict, floor_factor: float) -> tuple:
    """(worst relative error, its key): each key floored at floor_factor x the largest norm."""
    scale = max(float(np.linalg.norm(np.asarray(v, np.float64))) for v in desired.values())
    errors = {k: rel_err(actual[k], desired[k], floor_factor * scale) for k in desired}
    key = max(errors, key=errors.get)
    return errors[key], key


def _whole(values: dict) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(values[k], np.float64)) for k in sorted(values)])


def compare_update(got: dict, expected: dict, policy: str, floor_factor: float = 1.0) -> tuple:
    """(error, tolerance, what) of a training step's weight update against the expected one:
    per key in float32 (each against max(its norm, floor_factor x FAMILY_FLOOR x the largest)),
    as one vector under mixed precision."""
    if policy == "float32":
        err, key = worst_per_key(got, expected, floor_factor * FAMILY_FLOOR[policy])
        return err, TOLERANCE[policy] * GRADIENT_FACTOR[policy], f"update of {key!r}"
    return (
        rel_err(_whole(got), _whole(expected)),
        MIXED_GRADIENT_TOLERANCE[policy],
        "update (all weights)",
    )


def verdict(results: dict, failures: list, passed_text: str, failed_suffix: str = "") -> dict:
    """The answer of a check: {"passed", "checks": {name: [error, tolerance]}, "text"}."""
    passed = not failures
    text = passed_text if passed else f"disqualified: {failures[0]}{failed_suffix}"
    return {"passed": passed, "checks": results, "text": text}


def check(workload, config) -> dict:
    """Compare `config` on `workload` with the float64 reference, in this process.

    Returns {"passed": bool, "checks": {name: [error, tolerance]}, "text": one line}.
    """
    policy = workload.dtype_policy
    device = devices.resolve(workload.device)
    n = min(VERIFY_BATCH, workload.batch_size * max(config.replicas, 1))
    shape = workload.input_shape
    results, failures = {}, []

    def build(variant, dtype_policy):
        with tf.device(device):
            return resnet18(
                variant, arch=workload.arch, input_shape=shape, dtype_policy=dtype_policy
            )

    # A serving engine converts the float32 model and computes in its own precision (its hint).
    engine = {"precision": policy} if is_engine(config.execution) else None
    with tf.device(device):
        model = build(config.variant, "float32" if engine else policy)
        reference = build("subclassed", "float64")
        shapes = {k: v.shape for k, v in export_weights(reference).items()}
        for attempt, draw in enumerate(DRAWS):
            rng = np.random.default_rng(draw)
            weights = random_weights(shapes, rng)
            x = rng.normal(size=(n, *shape)).astype(np.float32)
            labels = rng.integers(0, ARCHS[workload.arch].num_classes, n).astype(np.int32)
            import_weights(model, weights)
            import_weights(reference, weights)
            if workload.mode == "inference":
                step = compiled_step(model, "inference", config.execution, **(engine or {}))
                got = step(tf.constant(x))
                want = reference(tf.constant(x, tf.float64), training=False)
                err = rel_err(got, want)
                results["inference output"] = [err, TOLERANCE[policy]]
                if err > TOLERANCE[policy]:
                    failures.append(f"inference output off by {err:.3g} (> {TOLERANCE[policy]:g})")
                break
            step = compiled_step(model, "train", config.execution, policy)
            step(tf.constant(x), tf.constant(labels))
            tf.function(train_step(reference, "float64"))(
                tf.constant(x, tf.float64), tf.constant(labels)
            )
            moved = {k: v - weights[k] for k, v in export_weights(reference).items()}
            got = {k: v - weights[k] for k, v in export_weights(model).items()}
            err, tol, what = compare_update(got, moved, policy)
            results[f"train step, draw {attempt + 1}"] = [err, tol]
            if err <= tol:
                failures = []
                break
            failures = [f"{what} after one training step off by {err:.3g} (> {tol:g})"]
    return verdict(
        results,
        failures,
        "same function as the float64 reference",
        "" if workload.mode == "inference" else f", on {len(results)} draw(s)",
    )
