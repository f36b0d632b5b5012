"""Every variant's BasicBlock computes the reference block's function.

For drawn shapes, channel counts, strides and arch options, with the same weights: the output
shape, the inference output, the training-mode output (batch statistics), the gradients with
respect to the input and every parameter, and every weight and BN moving statistic after one
training step (forward, backward, SGD update). Half the cases run under `tf.function`, where
Grappler and oneDNN rewrite the graph, the way models are benchmarked and trained.

The reference is the `subclassed` block computed in float64: every float32 variant, `subclassed`
included, must sit within TOLERANCE of it, which also catches a wrong kernel that all float32
variants would share. Under mixed precision, forward outputs are compared with `subclassed` in the
same policy and gradients with the float64 reference as a whole (support.MIXED_GRADIENT_TOLERANCE).
"""

import functools

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import blocks

import support
from strategies import block_cases
from support import (
    DEGENERATE_BN,
    REFERENCE,
    assert_close,
    assert_dict_close,
    assert_mixed_gradients,
    images,
    random_weights,
    run,
    skip_known_precision_issue,
    skip_unless_runnable,
    train_step,
    zero_gradient_keys,
)


def _build(variant_name, case, policy):
    return support.block_model(
        variant_name,
        (case["height"], case["width"], case["channels"]),
        case["filters"],
        case["strides"],
        arch=case["arch"],
        dtype_policy=policy,
    )


def _problem(case):
    rng = np.random.default_rng(case["seed"])
    ref = _build(REFERENCE, case, "float32")
    weights = random_weights(ref, rng)
    x = images(rng, (case["batch"], case["height"], case["width"], case["channels"]))
    return weights, x, rng


@functools.lru_cache(maxsize=64)
def _reference(frozen_case, policy):
    """The reference block's results for a case (drawn identically for every variant in `ci`)."""
    case = dict(frozen_case)
    weights, x, rng = _problem(case)
    model = _build(REFERENCE, case, policy)
    blocks.import_weights(model, weights)
    infer = run(model, x, training=False)
    train_out = run(model, x, training=True)
    cotangent = rng.normal(size=train_out.shape).astype(np.float32)
    blocks.import_weights(model, weights)  # undo the moving-statistics update of the forward above
    _, grads = train_step(model, x, cotangent)
    return weights, x, cotangent, infer, train_out, grads, blocks.export_weights(model)


def _check_variant(variant, case, policy, graph):
    """Forward outputs against the reference in the same policy; gradients and one SGD step
    against the float64 reference (per key in float32, as a whole under mixed precision)."""
    key = tuple(sorted(case.items()))
    weights, x, cotangent, infer, train_out, grads, after = _reference(key, "float64")
    if policy != "float32":
        _, _, _, infer, train_out, _, _ = _reference(key, policy)
    model = _build(variant.name, case, policy)
    blocks.import_weights(model, weights)
    what = f"{variant.name} block {case} ({'tf.function' if graph else 'eager'})"

    got = run(model, x, training=False, graph=graph)
    assert got.shape == infer.shape, f"{what}: shape {got.shape} != reference {infer.shape}"
    assert_close(got, infer, policy, f"{what} inference output")
    if not variant.trainable:
        with pytest.raises(ValueError, match="inference-only"):
            model(x, training=True)
        return
    s = case["strides"]
    bn_count = case["batch"] * -(-case["height"] // s) * -(-case["width"] // s)
    degenerate = bn_count < DEGENERATE_BN
    assert_close(
        run(model, x, training=True, graph=graph),
        train_out,
        policy,
        f"{what} training output",
        "training output",
        degenerate=degenerate,
    )
    blocks.import_weights(model, weights)
    _, got_grads = train_step(model, x, cotangent, graph=graph)
    if policy == "float32":
        zero = zero_gradient_keys(grads, case["arch"])
        assert_dict_close(
            got_grads, grads, policy, f"{what} gradient", "gradient", degenerate, zero
        )
    else:
        assert_mixed_gradients(got_grads, grads, policy, f"{what} gradient")
    assert_dict_close(
        blocks.export_weights(model),
        after,
        policy,
        f"{what} weights after a step",
        "after step",
        degenerate,
    )


# Keras 3's TF backend once added a channels_first conv bias along the width whenever the width
# equalled the filter count (blocks._compat.ChannelsFirstConv2D); keep that case drawn every run.
_WIDTH_EQUALS_FILTERS = dict(
    batch=2, height=5, width=4, channels=2, filters=4, strides=1, arch="seed", seed=12
)
# A 1x1 stride-2 projection from few channels at an even size: the shape whose weight gradient
# TF's oneDNN NHWC kernel got wrong on an AVX2 CPU (see README, "Known TensorFlow issues").
_FEW_CHANNEL_PROJECTION = dict(
    batch=2, height=8, width=8, channels=3, filters=8, strides=2, arch="seed", seed=1
)


def test_block_matches_float64_reference(variant):
    skip_unless_runnable(variant)
    skip_known_precision_issue(variant)
    _float32_cases(variant)


def test_block_matches_reference_mixed_bfloat16(variant):
    skip_unless_runnable(variant, "mixed_bfloat16")
    skip_known_precision_issue(variant, "mixed_bfloat16")
    _bfloat16_cases(variant)


# (The device check runs before hypothesis draws, so an unrunnable variant skips once, by name.)
@example(case=_WIDTH_EQUALS_FILTERS, graph=False)
@example(case=_FEW_CHANNEL_PROJECTION, graph=True)
@given(case=block_cases(), graph=st.booleans())
def _float32_cases(variant, case, graph):
    _check_variant(variant, case, "float32", graph)


# bfloat16 keeps 8 significant bits, so a BN over a handful of values (see DEGENERATE_BN) turns
# rounding into noise; these cases normalise over >= 18 values per channel (batch >= 2, >= 3x3 out).
@settings(max_examples=max(3, settings.default.max_examples // 2))
@given(case=block_cases(min_batch=2, min_size=5, min_channels=2), graph=st.booleans())
def _bfloat16_cases(variant, case, graph):
    _check_variant(variant, case, "mixed_bfloat16", graph)


def test_block_output_shape_and_dtype(variant):
    skip_unless_runnable(variant)
    _shape_cases(variant)


@given(case=block_cases())
def _shape_cases(variant, case):
    """Shape (ceil(H/s), ceil(W/s), filters) and float32 output of the float32 block."""
    weights, x, _ = _problem(case)
    model = _build(variant.name, case, "float32")
    y = model(x, training=False)
    s = case["strides"]
    expected = (case["batch"], -(-case["height"] // s), -(-case["width"] // s), case["filters"])
    assert tuple(y.shape) == expected
    assert y.dtype == "float32"
    assert np.all(np.isfinite(np.asarray(y)))
