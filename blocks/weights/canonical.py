"""Canonical weights: one dict of NumPy arrays, the same keys in every variant.

Keys name the canonical layer path and the parameter: `stem.conv.kernel`, `layer2.0.bn1.gamma`,
`layer2.0.downsample.conv.bias`, `fc.kernel`, ... Conv kernels are HWIO and the dense kernel is
(in, out) whatever the variant's layout. A model's keys come from walking its layers, so a
variant needs no weight code as long as its leaf layers carry the shared names.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import numpy as np

from blocks._compat import keras
from blocks.layers import child_layers

# Keras attribute of each parameter, by leaf layer type; the canonical suffix is the attribute name.
_LEAF_PARAMS = (
    (keras.layers.Conv2D, ("kernel", "bias")),
    (keras.layers.BatchNormalization, ("gamma", "beta", "moving_mean", "moving_variance")),
    (keras.layers.Dense, ("kernel", "bias")),
)


def _leaf_variables(layer):
    """{suffix: variable} for a leaf layer, or None for a layer to descend into."""
    own = getattr(layer, "canonical_variables", None)
    if callable(own):
        return own()
    for cls, params in _LEAF_PARAMS:
        if isinstance(layer, cls):
            return {p: getattr(layer, p) for p in params if getattr(layer, p, None) is not None}
    return None


def leaf_layers(model):
    """(canonical path, layer) for every layer that holds canonical parameters, in model order."""

    def walk(layer, prefix):
        for child in child_layers(layer):
            path = prefix + child.name
            if _leaf_variables(child) is not None:
                yield path, child
                continue
            if child.weights and not child_layers(child):
                raise TypeError(
                    f"Layer {path!r} ({type(child).__name__}) holds weights but has no "
                    "canonical names: give it a `canonical_variables()` method."
                )
            yield from walk(child, path + ".")

    yield from walk(model, "")


def canonical_variables(model) -> dict:
    """{canonical key: variable} for every parameter and BN statistic of a built model."""
    found: dict = {}
    for path, layer in leaf_layers(model):
        for suffix, variable in _leaf_variables(layer).items():
            key = f"{path}.{suffix}"
            if key in found:
                raise ValueError(f"Two parameters of {model.name!r} map to the key {key!r}.")
            found[key] = variable
    if not found:
        raise ValueError(
            f"Model {model.name!r} has no weights to export or import; build it first "
            "(blocks.resnet18 returns built models)."
        )
    return found


def _read(variable) -> np.ndarray:
    return np.array(variable.numpy())


def export_canonical(model) -> dict:
    """{canonical key: numpy array} of every parameter and BN statistic, copied."""
    return {key: _read(v) for key, v in canonical_variables(model).items()}


def _numpy_dtype(variable) -> np.dtype:
    import tensorflow as tf

    return np.dtype(tf.as_dtype(variable.dtype).as_numpy_dtype)


def _describe(keys, limit=8) -> str:
    keys = sorted(keys)
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _arch_hint(model, missing: set, extra: set) -> str:
    """A cause for a key mismatch that an arch explains: conv biases and no shortcut BN are the
    seed arch's, the opposite the imagenet arch's."""
    model_arch = getattr(model, "arch", None)
    has_bias = any(
        k.endswith("conv.bias") or k.endswith(("conv1.bias", "conv2.bias")) for k in extra
    )
    has_shortcut_bn = any(".downsample.bn." in k for k in extra)
    if has_bias and not has_shortcut_bn and any(".downsample.bn." in k for k in missing):
        return " They have conv biases and no shortcut BN: the seed arch's weights" + (
            f", and this model is arch {model_arch!r}." if model_arch else "."
        )
    if has_shortcut_bn and any(k.endswith("conv1.bias") for k in missing):
        return " They have shortcut BNs and no conv biases: the imagenet arch's weights" + (
            f", and this model is arch {model_arch!r}." if model_arch else "."
        )
    return ""


def assign(model, weights: Mapping, *, skip=(), naming: str = "canonical") -> None:
    """Assign `weights` (canonical key -> array) to `model`, all or nothing.

    Every key, shape and dtype is checked before anything is assigned; if an assignment fails
    anyway, the values it replaced are put back. Keys in `skip` are neither required nor set.

    Raises:
        ValueError: a missing, extra, misshaped, non-float or non-finite entry, named.
    """
    variables = canonical_variables(model)
    targets = {k: v for k, v in variables.items() if k not in skip}
    missing = set(targets) - set(weights)
    extra = set(weights) - set(targets)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing keys: {_describe(missing)}")
        if extra:
            parts.append(f"unexpected keys: {_describe(extra)}")
        source = "" if naming == "canonical" else f" (read as {naming} names, shown canonical)"
        # The count is always the whole model's, what save_weights writes, so that two refusals
        # of the same model agree; keys it may go without are said apart.
        skipped = [k for k in variables if k in skip]
        without = f", or {len(targets)} without {', '.join(skipped)}" if skipped else ""
        raise ValueError(
            f"Weights do not fit model {model.name!r}{source}: {'; '.join(parts)}."
            f"{_arch_hint(model, missing, extra)} "
            f"The model expects {len(variables)} canonical keys (as save_weights writes them) "
            f"such as {next(iter(variables))!r}{without}. Nothing was assigned."
        )
    staged = []
    for key, variable in targets.items():
        value = np.asarray(weights[key])
        expected = tuple(variable.shape)
        if value.shape != expected:
            raise ValueError(
                f"Weight {key!r} has the wrong shape: model {model.name!r} expects {expected}; "
                f"Received: shape {value.shape}. Nothing was assigned."
            )
        if value.dtype.kind != "f":
            raise ValueError(
                f"Weight {key!r} must be a floating-point array; Received: dtype {value.dtype}. "
                "Nothing was assigned."
            )
        if not np.all(np.isfinite(value)):
            raise ValueError(f"Weight {key!r} holds NaN or infinite values. Nothing was assigned.")
        staged.append((variable, value.astype(_numpy_dtype(variable), copy=False)))
    backup = [(variable, _read(variable)) for variable, _ in staged]
    try:
        for variable, value in staged:
            variable.assign(value)
    except BaseException:
        for variable, value in backup:
            variable.assign(value)
        raise


def initial_weights(model, seed: int) -> dict:
    """Keras-default initial values for `model`'s keys, drawn from `seed` key by key.

    Each key has its own stream (seeded by `seed` and the key), so the values do not depend on the
    order in which a variant creates its layers: the same seed gives the same network everywhere.
    Kernels are Glorot-uniform, biases and BN betas/means zero, BN gammas/variances one.
    """
    values = {}
    for key, variable in canonical_variables(model).items():
        shape = tuple(variable.shape)
        suffix = key.rsplit(".", 1)[1]
        if suffix == "kernel":
            receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
            fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
            values[key] = rng.uniform(-limit, limit, size=shape).astype(np.float32)
        elif suffix in ("gamma", "moving_variance"):
            values[key] = np.ones(shape, np.float32)
        else:
            values[key] = np.zeros(shape, np.float32)
    return values
