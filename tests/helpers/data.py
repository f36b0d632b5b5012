"""Random problems: weights far from identity (the generator `blocks.pick` verifies with), images."""

from __future__ import annotations

import numpy as np

from blocks.measure.verify import random_weights  # noqa: F401  (one generator for both)


def shapes_of(weights: dict) -> dict:
    return {k: tuple(np.shape(v)) for k, v in weights.items()}


def images(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.normal(0.0, 1.0, shape).astype(np.float32)
