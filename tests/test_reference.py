"""Every variant against references the project did not compute: a NumPy float64 ResNet written
from the architectures' definitions (tests/helpers/numpy_resnet.py) and the seed article's own
Keras network (tests/helpers/article.py).

A bug in the layers every variant shares (`blocks.layers`: padding, BN constants, bias, shortcut)
moves all variants and the project's float64 reference together; these comparisons catch it.
Random weights keep every BN far from identity with moving variances down to 0.05, so a wrong BN
epsilon shows in an inference output, and the moving statistics after a training-mode call are
compared in every BN, so a wrong momentum shows too.
"""

import functools

import numpy as np
import pytest
import tensorflow as tf

import blocks
from tests.helpers import article, numpy_resnet
from tests.helpers.data import images, random_weights
from tests.helpers.runs import BATCH, SHAPES, network, run, trainable_variables
from tests.helpers.tolerances import EXACT, MOVING_STATISTICS


@functools.lru_cache(maxsize=None)
def problem(arch: str, draw: int = 0, shape: tuple = None, batch: int = BATCH):
    """Random weights, images and the NumPy reference's results (inference, training, moving
    statistics after the training-mode call) for `arch` (at SHAPES[arch] unless `shape`)."""
    rng = np.random.default_rng([draw, len(arch)])
    shapes = numpy_resnet.param_shapes(arch, 18, 3, blocks.ARCHS[arch].num_classes)
    weights = random_weights(shapes, rng)
    x = images(rng, (batch, *(shape or SHAPES[arch])))
    params = {k: v.astype(np.float64) for k, v in weights.items()}
    infer, _ = numpy_resnet.resnet_forward(params, x, arch)
    train, stats = numpy_resnet.resnet_forward(params, x, arch, training=True)
    return weights, x, infer, train, stats


def _moving(weights: dict) -> dict:
    return {k: v for k, v in weights.items() if "moving_" in k}


def test_the_weight_format_is_the_definitions():
    """The canonical keys and shapes, written out from the definition, are what models export."""
    for arch in blocks.ARCHS:
        model = network("subclassed", arch, SHAPES[arch])
        got = {k: v.shape for k, v in blocks.export_weights(model).items()}
        classes = blocks.ARCHS[arch].num_classes
        assert got == numpy_resnet.param_shapes(arch, 18, 3, classes), arch


def test_float64_reference_is_the_numpy_network(arch):
    """The project's float64 reference (the one the gradient checks use) computes the defined
    function to roundoff: inference, training mode, and the moving statistics after it."""
    weights, x, infer, train, stats = problem(arch.name)
    model = network("subclassed", arch.name, SHAPES[arch.name], "float64")
    blocks.import_weights(model, weights)
    assert np.max(np.abs(run(model, x, False) - infer)) <= EXACT * np.max(np.abs(infer))
    assert np.max(np.abs(run(model, x, True) - train)) <= EXACT * np.max(np.abs(train))
    after = _moving(blocks.export_weights(model))
    assert sorted(after) == sorted(stats)
    for key, value in stats.items():
        np.testing.assert_allclose(after[key], value, err_msg=key, **MOVING_STATISTICS)


def test_every_variant_computes_the_numpy_network(variant, arch, errors):
    """float32, eager and under tf.function: inference; training mode and every BN's moving
    statistics after it (momentum) where the variant trains."""
    weights, x, infer, train, stats = problem(arch.name)
    model = network(variant.name, arch.name, SHAPES[arch.name])
    what = f"{variant.name} resnet18/{arch.name}"
    for graph in (False, True):
        blocks.import_weights(model, weights)
        how = "tf.function" if graph else "eager"
        errors.close(run(model, x, False, graph), infer, "float32", f"{what} ({how}) inference")
        if not variant.trainable:
            continue
        errors.close(
            run(model, x, True, graph), train, "float32", f"{what} ({how}) training", "training"
        )
        after = _moving(blocks.export_weights(model))
        errors.dict_close(
            after, stats, "float32", f"{what} ({how}) moving statistics", "moving statistics"
        )


def test_gradients_of_the_float64_reference_are_numerical_derivatives(arch):
    """The float64 reference's gradients (which every variant's are compared with) against
    central differences of the NumPy network, along a random direction in inputs and weights."""
    weights, x, _, train, _ = problem(arch.name, draw=1)
    rng = np.random.default_rng(3)
    cot = rng.normal(size=train.shape)
    model = network("subclassed", arch.name, SHAPES[arch.name], "float64")
    blocks.import_weights(model, weights)
    variables = trainable_variables(model)
    x64 = tf.constant(x, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x64)
        loss = tf.reduce_sum(model(x64, training=True) * cot)
    keys = sorted(variables)
    grads = tape.gradient(loss, [x64] + [variables[k] for k in keys])
    # Each parameter moves in proportion to its own scale, so that no layer's inputs move more
    # than another's.
    direction = {k: rng.normal(size=weights[k].shape) * np.std(weights[k]) for k in keys}
    dx = rng.normal(size=x.shape) * np.std(x)
    analytic = float(np.sum(grads[0] * dx)) + sum(
        float(np.sum(g * direction[k])) for k, g in zip(keys, grads[1:])
    )
    params = {k: v.astype(np.float64) for k, v in weights.items()}

    def loss_at(h):
        moved = {k: v + h * direction[k] if k in direction else v for k, v in params.items()}
        y, _ = numpy_resnet.resnet_forward(moved, x + h * dx, arch.name, training=True)
        return float(np.sum(y * cot))

    # A step small enough that no ReLU or max-pool input crosses a kink on this draw (at 1e-6
    # some do: errors up to 2%), large enough for roundoff (~1e-16 x loss / h) to stay far below
    # the tolerance; measured errors at 1e-8: 6e-8 to 2.3e-7.
    h = 1e-8
    numeric = (loss_at(h) - loss_at(-h)) / (2 * h)
    assert abs(analytic - numeric) <= 1e-5 * abs(numeric), (analytic, numeric)


@functools.lru_cache(maxsize=None)
def _article(dtype: str):
    return article.built_article_resnet18(SHAPES["seed"], dtype=dtype)


def test_the_article_network_is_the_seed_arch():
    """The article's own Keras code (float64), loaded with the same weights, computes what the
    NumPy seed network computes: the definition the project calls `seed` is the article's."""
    weights, x, infer, train, stats = problem("seed")
    model = _article("float64")
    article.load_canonical(model, weights)
    assert (
        np.max(np.abs(np.asarray(model(x, training=False)) - infer)) <= EXACT * np.abs(infer).max()
    )
    assert (
        np.max(np.abs(np.asarray(model(x, training=True)) - train)) <= EXACT * np.abs(train).max()
    )
    targets = article.canonical_targets(model)
    for key, value in stats.items():
        np.testing.assert_allclose(
            np.asarray(targets[key]), value, err_msg=key, **MOVING_STATISTICS
        )


def test_every_variant_computes_the_articles_network(variant, errors):
    """Each variant's seed ResNet18 against the article's network in float32, same weights."""
    weights, x, *_ = problem("seed", draw=2)
    reference = _article("float32")
    article.load_canonical(reference, weights)
    model = network(variant.name, "seed", SHAPES["seed"])
    blocks.import_weights(model, weights)
    expected = np.asarray(reference(x, training=False), np.float64)
    errors.close(run(model, x, False), expected, "float32", f"{variant.name} vs the article")
    if variant.trainable:
        article.load_canonical(reference, weights)
        expected = np.asarray(reference(x, training=True), np.float64)
        errors.close(
            run(model, x, True), expected, "float32", f"{variant.name} vs the article", "training"
        )


@pytest.mark.parametrize("depth", [34])
def test_resnet34_is_the_numpy_network(depth):
    """The deeper stage table, float64 reference against NumPy (one arch suffices: the stage
    table is shared, and the blocks are checked above)."""
    rng = np.random.default_rng(4)
    shapes = numpy_resnet.param_shapes("seed", depth, 3, 10)
    weights = random_weights(shapes, rng)
    x = images(rng, (2, 16, 16, 3))
    model = network("subclassed", "seed", (16, 16, 3), "float64", depth)
    blocks.import_weights(model, weights)
    expected, _ = numpy_resnet.resnet_forward(
        {k: v.astype(np.float64) for k, v in weights.items()}, x, "seed", depth
    )
    assert np.max(np.abs(run(model, x, False) - expected)) <= EXACT * np.abs(expected).max()
