"""mixed_bfloat16 and mixed_float16 against float64, with the tolerances stated in
tests/helpers/tolerances.py: forward outputs against the NumPy network, gradients and one update
against the float64 reference, and the training step the benchmarks time (loss scaling included
under mixed_float16) against the same step computed in float64.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import blocks
from blocks import steps
from tests.helpers import precision
from tests.helpers.hosts import nchw_dtype_reason
from tests.helpers.runs import network, run
from tests.helpers.strategies import block_cases
from tests.helpers.tolerances import MIXED_GRADIENT_TOLERANCE, concatenated
from tests.test_block_properties import check_block
from tests.test_reference import problem

MIXED = ("mixed_bfloat16", "mixed_float16")
COMPUTE = {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}


@pytest.fixture(params=MIXED)
def policy(request):
    return request.param


def skip_unless_kernels(variant, policy):
    """nchw in half precision needs oneDNN kernels this CPU may lack (read from its flags)."""
    reason = nchw_dtype_reason(COMPUTE[policy]) if variant.name == "nchw" else None
    if reason:
        pytest.skip(reason)


# Smaller than the float32 checks' inputs: float16 NCHW convolutions run slowly on CPUs (10 s for
# a seed ResNet18 at 24x24, batch 4, measured on a Xeon with AMX). Each BN still normalises over
# at least 12 values per channel (the last stage is 2x2 at batch 3).
MIXED_SHAPE, MIXED_BATCH = (16, 16, 3), 3


def test_network_forward_against_numpy(variant, policy, errors):
    """Inference (and training-mode) logits of the seed network against the NumPy float64 one."""
    skip_unless_kernels(variant, policy)
    weights, x, infer, train, _ = problem("seed", 0, MIXED_SHAPE, MIXED_BATCH)
    model = network(variant.name, "seed", MIXED_SHAPE, policy)
    blocks.import_weights(model, weights)
    what = f"{variant.name} resnet18/seed {policy}"
    errors.close(run(model, x, False, graph=True), infer, policy, f"{what} inference")
    if variant.trainable:
        blocks.import_weights(model, weights)
        errors.close(run(model, x, True, graph=True), train, policy, f"{what} training", "training")


def test_block_against_float64(variant, policy, errors):
    skip_unless_kernels(variant, policy)
    misses = precision.Misses()
    _block_cases(variant, policy, errors, misses)
    misses.skip_if_any()


# Fewer cases than float32 (mixed precision is slow on CPUs without native kernels); BN over at
# least 18 values (bfloat16's 8 bits turn a BN over a handful of values into noise).
@settings(max_examples=max(3, settings.default.max_examples // 3))
@given(case=block_cases(min_bn_values=18, min_size=3), graph=st.booleans())
def _block_cases(variant, policy, errors, misses, case, graph):
    check_block(variant, case, graph, errors, misses, policy)


def test_training_step_against_float64(policy, errors):
    """The training step the benchmarks and `pick` time (forward, softmax cross-entropy,
    gradients, SGD with momentum; loss scaling under mixed_float16), one step from the same
    weights, against the same step in float64: the weights after it."""
    arch = "seed"
    weights, x, *_ = problem(arch, 0, MIXED_SHAPE, MIXED_BATCH)
    labels = np.arange(MIXED_BATCH) % blocks.ARCHS[arch].num_classes
    after = {}
    for run_policy in ("float64", policy):
        model = network("subclassed", arch, MIXED_SHAPE, run_policy)
        blocks.import_weights(model, weights)
        step = steps.train_step(model, run_policy)
        step(np.asarray(x, model.compute_dtype if run_policy == "float64" else "float32"), labels)
        after[run_policy] = blocks.export_weights(model)
    moved = {k: after["float64"][k] - weights[k] for k in weights}
    got = {k: after[policy][k] - weights[k] for k in weights}
    assert max(np.abs(v).max() for v in moved.values()) > 0, "the step moved nothing"
    errors.close(
        concatenated(got),
        concatenated(moved),
        policy,
        f"{policy} train step",
        "update (whole)",
        tol=MIXED_GRADIENT_TOLERANCE[policy],
    )
