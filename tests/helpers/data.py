"""Random problems: weights far from identity, images, cotangents; drawn from a NumPy Generator."""

from __future__ import annotations

import numpy as np


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


def shapes_of(weights: dict) -> dict:
    return {k: tuple(np.shape(v)) for k, v in weights.items()}


def images(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.normal(0.0, 1.0, shape).astype(np.float32)
