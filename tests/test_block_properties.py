"""Every variant's BasicBlock computes the defined block, for drawn shapes and options.

For each drawn case (sizes down to 1, odd and even, stride 1 and 2, channels up to 16, identity and
projection shortcuts, bias and shortcut BN apart, both paddings, three pairs of BN constants):
- the output shape and dtype;
- the inference output, the training-mode output and every moving statistic after it, against
  the NumPy float64 block (tests/helpers/numpy_resnet.py, written from the definition);
- the gradients with respect to the input and every parameter, and the weights after one SGD step,
  against the project's `subclassed` block computed in float64, whose own forward pass is checked
  against NumPy to 1e-10 in the same test (so the gradient reference is anchored outside too).
Half the cases run under `tf.function`, where Grappler and oneDNN rewrite the graph.
Mixed precision, with the same checks: tests/test_precision.py.
"""

import functools

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import blocks
from tests.helpers import numpy_resnet, precision
from tests.helpers.data import images, random_weights, shapes_of
from tests.helpers.runs import block_model, run, train_step
from tests.helpers.strategies import PATHS, block_cases, options_of, paths
from tests.helpers.tolerances import DEGENERATE_BN, EXACT

REFERENCE = "subclassed"


def _model(variant, case, policy="float32"):
    return block_model(
        variant,
        (case["height"], case["width"], case["channels"]),
        case["filters"],
        case["strides"],
        dtype_policy=policy,
        **options_of(case),
    )


def _key(case) -> tuple:
    return tuple(sorted(case.items()))


def _numpy_block(case, params, x, training):
    return numpy_resnet.block_forward(
        x,
        params,
        "block",
        case["filters"],
        case["strides"],
        use_bias=case["use_bias"],
        shortcut_bn=case["shortcut_bn"],
        padding=case["padding"],
        momentum=case["bn_momentum"],
        epsilon=case["bn_epsilon"],
        training=training,
    )


@functools.lru_cache(maxsize=64)
def reference(key):
    """One case's problem and its references (drawn identically for every variant in `ci`)."""
    case = dict(key)
    rng = np.random.default_rng(case["seed"])
    ref = _model(REFERENCE, case, "float64")
    weights = random_weights(shapes_of(blocks.export_weights(ref)), rng)
    x = images(rng, (case["batch"], case["height"], case["width"], case["channels"]))
    params = {k: v.astype(np.float64) for k, v in weights.items()}
    infer, _ = _numpy_block(case, params, x, training=False)
    train, stats = _numpy_block(case, params, x, training=True)
    cotangent = rng.normal(size=train.shape)
    # The float64 reference computes the NumPy block to roundoff, before it serves for gradients.
    blocks.import_weights(ref, weights)
    scale = np.abs(train).max() + 1e-30
    assert np.abs(run(ref, x, False) - infer).max() <= EXACT * (np.abs(infer).max() + 1e-30)
    assert np.abs(run(ref, x, True) - train).max() <= EXACT * scale
    blocks.import_weights(ref, weights)
    _, grads = train_step(ref, x, cotangent)
    return weights, x, cotangent, infer, train, stats, grads, blocks.export_weights(ref)


def zero_gradient_keys(keys, shortcut_bn: bool) -> set:
    """Parameters whose training-mode gradient is exactly zero: biases of convs feeding a BN."""
    zero = {k for k in keys if k.endswith(("conv1.bias", "conv2.bias"))}
    if shortcut_bn:
        zero |= {k for k in keys if k.endswith("downsample.conv.bias")}
    return zero


def check_block(variant, case, graph, errors, misses, policy="float32"):
    """The checks above, for one case; under a mixed `policy`, against the same references with
    that policy's tolerances (gradients as one vector)."""
    weights, x, cot, infer, train, stats, grads, after = reference(_key(case))
    model = _model(variant.name, case, policy)
    blocks.import_weights(model, weights)
    what = f"{variant.name} block {case} {policy} ({'tf.function' if graph else 'eager'})"

    got = run(model, x, training=False, graph=graph)
    assert got.shape == infer.shape, f"{what}: shape {got.shape} != {infer.shape}"
    if policy == "float32":
        assert model(x[:1], training=False).dtype == "float32", what
    errors.close(got, infer, policy, f"{what} inference output")
    if not variant.trainable:
        with pytest.raises(blocks.InferenceOnlyError):
            model(x, training=True)
        return
    s = case["strides"]
    per_channel = case["batch"] * -(-case["height"] // s) * -(-case["width"] // s)
    degenerate = per_channel < DEGENERATE_BN
    errors.close(
        run(model, x, True, graph),
        train,
        policy,
        f"{what} training",
        "training output",
        degenerate=degenerate,
    )
    moving = {k: v for k, v in blocks.export_weights(model).items() if "moving_" in k}
    errors.dict_close(moving, stats, policy, f"{what} moving", "moving statistics")
    blocks.import_weights(model, weights)
    _, got_grads = train_step(model, x, cot, graph=graph)
    with misses.expect(precision.known_issue(variant.name, policy, case=case)):
        errors.gradients_close(
            got_grads,
            grads,
            policy,
            f"{what} gradient",
            degenerate=degenerate,
            zero_keys=zero_gradient_keys(grads, case["shortcut_bn"]),
        )
        if policy != "float32":
            return  # the update under mixed precision: test_precision's training step
        errors.dict_close(
            blocks.export_weights(model),
            after,
            policy,
            f"{what} after a step",
            "after step",
            degenerate=degenerate,
        )


# Keras 3's TF backend once added a channels_first conv bias along the width whenever the width
# equalled the filter count (blocks._compat.ChannelsFirstConv2D); keep that case drawn every run.
_WIDTH_EQUALS_FILTERS = dict(
    batch=2,
    height=5,
    width=4,
    channels=2,
    filters=4,
    strides=1,
    use_bias=True,
    shortcut_bn=False,
    padding="same",
    bn_momentum=0.99,
    bn_epsilon=1e-3,
    seed=12,
)
# A 1x1 stride-2 projection from few channels at an even size, with shortcut BN and symmetric
# padding (the imagenet block): the paths a 3-channel stem-less block takes.
_FEW_CHANNEL_PROJECTION = dict(
    batch=2,
    height=8,
    width=8,
    channels=3,
    filters=8,
    strides=2,
    use_bias=False,
    shortcut_bn=True,
    padding="symmetric",
    bn_momentum=0.9,
    bn_epsilon=1e-5,
    seed=1,
)
# Degenerate: a 1x1 image, batch 1 (BN over one value per channel).
_ONE_PIXEL = dict(
    batch=1,
    height=1,
    width=1,
    channels=5,
    filters=3,
    strides=2,
    use_bias=True,
    shortcut_bn=True,
    padding="same",
    bn_momentum=0.99,
    bn_epsilon=1e-3,
    seed=3,
)


_PINNED = (_WIDTH_EQUALS_FILTERS, _FEW_CHANNEL_PROJECTION, _ONE_PIXEL)


def test_block_computes_the_defined_block(variant, errors):
    misses = precision.Misses()
    seen = set()
    _cases(variant, errors, misses, seen)
    # The drawn cases alone (the pinned examples not counted) took every path of the block code.
    missed = sorted(PATHS - seen)
    assert not missed, f"the drawn cases never took: {missed}"
    misses.skip_if_any()


@example(case=_WIDTH_EQUALS_FILTERS, graph=False)
@example(case=_FEW_CHANNEL_PROJECTION, graph=True)
@example(case=_ONE_PIXEL, graph=False)
@given(case=block_cases(), graph=st.booleans())
def _cases(variant, errors, misses, seen, case, graph):
    if case not in _PINNED:
        seen |= paths(case, graph)
    check_block(variant, case, graph, errors, misses)
