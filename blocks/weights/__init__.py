"""Portable weights: the same keys in every variant, and the ecosystem's namings and files.

    blocks.save_weights(model, "w.npz")                       # canonical keys, NumPy archive
    blocks.save_weights(model, "w.safetensors", naming="torchvision")  # loads into torchvision
    blocks.load_weights(model, "resnet18.safetensors")        # timm / torchvision, detected
    blocks.import_weights(model, torch_model.state_dict())    # a dict of arrays (or tensors)
    blocks.import_weights(model, keras_hub_backbone)          # a keras-hub ResNetBackbone

Every import is all or nothing: keys, shapes, dtypes and values are checked before anything is
assigned, and a failure names the keys and the cause, ending "Nothing was assigned". The
classifier head is optional: weights without one (a backbone), or with one for another number of
classes, load into the rest of the model and leave its head as initialised, with a
`HeadNotLoadedWarning` that says so.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Optional

import numpy as np

from blocks import checks
from blocks.weights import files, namings
from blocks.weights.canonical import (
    assign,
    canonical_variables,
    export_canonical,
    initial_weights,
    leaf_layers,
)

HEAD = ("fc.kernel", "fc.bias")

__all__ = [
    "HeadNotLoadedWarning",
    "canonical_variables",
    "export_weights",
    "import_weights",
    "initial_weights",
    "leaf_layers",
    "load_weights",
    "read_weights",
    "save_weights",
]


class HeadNotLoadedWarning(UserWarning):
    """Weights without a classifier head (or with one of another size) were imported; the
    model's head was left as initialised."""


def _as_arrays(weights) -> tuple:
    """(dict of NumPy arrays, naming hint) from a mapping of arrays or tensors, or from a
    keras-hub ResNetBackbone."""
    if not isinstance(weights, Mapping):
        if hasattr(weights, "stackwise_num_filters") and hasattr(weights, "layers"):
            block = getattr(weights, "block_type", "basic_block")
            if block != "basic_block" or getattr(weights, "use_pre_activation", False):
                raise ValueError(
                    "Invalid keras-hub backbone. Expected a ResNetBackbone with "
                    "block_type='basic_block' and use_pre_activation=False (ResNet18/34 v1); "
                    f"Received: block_type={block!r}, use_pre_activation="
                    f"{getattr(weights, 'use_pre_activation', None)!r}. Nothing was assigned."
                )
            return namings.from_keras_hub_model(weights), "keras_hub"
        raise ValueError(
            "Invalid weights. Expected a mapping of keys to arrays (canonical, torchvision/timm "
            "or keras-hub names) or a keras-hub ResNetBackbone; Received: weights of type "
            f"{type(weights).__name__}"
        )
    out = {}
    for key, value in weights.items():
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().numpy()
        out[str(key)] = np.asarray(value)
    return out, None


def _head_left_out(model, weights: dict) -> Optional[str]:
    """Why the head stays as initialised (no head in `weights`, or one of another class count),
    or None when the head is to be imported like every other key."""
    targets = canonical_variables(model)
    if not any(k in targets for k in HEAD):
        return None  # a model without a head (a single block): nothing to leave out
    present = [k for k in HEAD if k in weights]
    if not present:
        return "the weights have no classifier head"
    if len(present) == len(HEAD):
        got = weights["fc.kernel"].shape
        want = tuple(targets["fc.kernel"].shape)
        if len(got) == 2 and got[0] == want[0] and got[1] != want[1]:
            if weights["fc.bias"].shape == (got[1],):
                return f"the weights' head has {got[1]} classes, the model's {want[1]}"
    return None


def import_weights(model, weights, naming: Optional[str] = None) -> None:
    """Assign `weights` to `model`, all or nothing (see the module docstring).

    Args:
        model: a model built by `blocks.resnet18` / `blocks.resnet34`.
        weights: a mapping of names to arrays (NumPy, or tensors of TF or PyTorch), or a
            keras-hub `ResNetBackbone`.
        naming: "canonical", "torchvision" (timm's too) or "keras_hub"; default: detected from
            the keys.

    Raises:
        ValueError: unknown naming or keys; missing, extra, misshaped, non-float or non-finite
            entries; a bottleneck ResNet's weights. The model is unchanged.
    """
    arrays, hint = _as_arrays(weights)
    if naming is not None:
        checks.choice(naming, namings.NAMINGS, "naming")
    naming = naming or hint or namings.detect(arrays)
    canonical = namings.to_canonical(arrays, naming)
    left_out = _head_left_out(model, canonical)
    if left_out:
        canonical = {k: v for k, v in canonical.items() if k not in HEAD}
    assign(model, canonical, skip=HEAD if left_out else (), naming=naming)
    if left_out:
        warnings.warn(
            f"{left_out}: imported everything else and left fc.kernel and fc.bias as "
            "initialised (train or import a head for this model's classes)",
            HeadNotLoadedWarning,
            stacklevel=2,
        )


def export_weights(model, naming: str = "canonical") -> dict:
    """{key: numpy array} of every parameter and BN statistic, copied, in `naming`
    ("canonical" or "torchvision")."""
    return namings.from_canonical(export_canonical(model), naming)


def save_weights(model, path, naming: str = "canonical") -> None:
    """Write `export_weights(model, naming)` to `path`, atomically, in the format its extension
    names: `.npz` (a NumPy archive) or `.safetensors` (loadable by `safetensors.torch.load_file`),
    in any case.

    Raises:
        ValueError: any other extension (nothing written), an unknown naming, or a weight
            holding NaN or inf (named; nothing written).
        IsADirectoryError / FileNotFoundError / PermissionError: naming `path`.
    """
    files.write(path, export_weights(model, naming))


def read_weights(path) -> dict:
    """{key: array} from an `.npz` or `.safetensors` file (as they are named in it), told apart
    by its first bytes whatever its extension."""
    return files.read(path)


def load_weights(model, path, naming: Optional[str] = None) -> None:
    """`import_weights(model, read_weights(path), naming)`; the model is unchanged on any error."""
    import_weights(model, read_weights(path), naming)
