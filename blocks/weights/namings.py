"""Weights named the ecosystem's ways, to and from the canonical keys.

- "canonical": this project's (`stem.conv.kernel`, `layer2.0.bn1.gamma`, ...; HWIO kernels, dense
  kernel (in, out)).
- "torchvision": PyTorch's `torchvision.models.resnet18().state_dict()`, which timm's resnet18
  shares (`conv1.weight`, `bn1.running_var`, `layer2.0.downsample.0.weight`,
  `layer2.0.downsample.1.bias`, `fc.weight`, ...; OIHW kernels, dense kernel (out, in);
  `num_batches_tracked` carries no weight and is ignored). A conv bias (the seed arch has them)
  is `<conv>.bias`.
- "keras_hub": the layers of keras-hub's `ResNetBackbone` with basic blocks (`conv1_conv`,
  `conv1_bn`, `stack1_block0_1_conv`, `stack1_block0_0_bn` for a shortcut, ...), each with its
  Keras variables (`kernel`; `gamma`, `beta`, `moving_mean`, `moving_variance`), keyed
  `<layer>/<variable>`. A backbone has no classifier head.
"""

from __future__ import annotations

import re
from typing import Iterable

import numpy as np

NAMINGS = ("canonical", "torchvision", "keras_hub")

_TORCH_BN = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}
_CANONICAL_BN = {v: k for k, v in _TORCH_BN.items()}


def detect(keys: Iterable[str]) -> str:
    """The naming of a set of keys, or ValueError saying what they look like."""
    keys = list(keys)
    if any(k.startswith("stem.") or k.endswith(".kernel") for k in keys):
        return "canonical"
    if any(k.startswith(("conv1.", "bn1.", "layer1.")) and "." in k for k in keys):
        return "torchvision"
    if any(re.match(r"^(conv1_(conv|bn)|stack\d+_block\d+_\d_(conv|bn))/", k) for k in keys):
        return "keras_hub"
    shown = ", ".join(repr(k) for k in sorted(keys)[:5])
    raise ValueError(
        "Unrecognised weights: their keys are not ResNet weights in a known naming "
        f"({', '.join(NAMINGS)}); Received keys such as {shown}"
        + (f" ({len(keys)} in all)" if len(keys) > 5 else "")
        + ". Nothing was assigned."
    )


def _is_bottleneck(keys) -> list:
    return sorted(k for k in keys if re.search(r"(conv3|bn3|_3_conv|_3_bn)", k))


def check_basic_blocks(keys, naming: str) -> None:
    """ValueError if the weights are of a bottleneck ResNet (50 and deeper)."""
    found = _is_bottleneck(keys)
    if found:
        raise ValueError(
            f"These {naming} weights are of a bottleneck ResNet (ResNet50 or deeper: they hold "
            f"{found[0]!r} and {len(found) - 1} more third-convolution keys); this model is a "
            "BasicBlock ResNet (18 or 34). Nothing was assigned."
        )


def _torch_to_canonical_key(key: str):
    """The canonical key and the array's transposition for a torchvision key, or None."""
    parts = key.split(".")
    name, param = ".".join(parts[:-1]), parts[-1]
    if param == "num_batches_tracked":
        return None
    if name == "fc":
        return f"fc.{'kernel' if param == 'weight' else 'bias'}", (
            1,
            0,
        ) if param == "weight" else None
    if name == "conv1":
        name = "stem.conv"
    elif name == "bn1":
        name = "stem.bn"
    else:
        name = name.replace(".downsample.0", ".downsample.conv").replace(
            ".downsample.1", ".downsample.bn"
        )
    if name.endswith(("bn", "bn1", "bn2")) or name.endswith(".bn"):
        if param not in _TORCH_BN:
            return key, None  # reported as unexpected by the canonical check
        return f"{name}.{_TORCH_BN[param]}", None
    if param == "weight":
        return f"{name}.kernel", (2, 3, 1, 0)  # OIHW -> HWIO
    return f"{name}.{param}", None


def to_canonical(weights: dict, naming: str) -> dict:
    """`weights` in `naming` as canonical keys and layouts."""
    if naming == "canonical":
        return dict(weights)
    check_basic_blocks(weights, naming)
    out = {}
    if naming == "torchvision":
        for key, value in weights.items():
            mapped = _torch_to_canonical_key(key)
            if mapped is None:
                continue
            canonical, perm = mapped
            value = np.asarray(value)
            out[canonical] = (
                np.transpose(value, perm) if perm and value.ndim == len(perm) else value
            )
        return out
    if naming == "keras_hub":
        for key, value in weights.items():
            layer, _, variable = key.partition("/")
            out[f"{_keras_hub_to_canonical_layer(layer)}.{variable}"] = np.asarray(value)
        return out
    raise ValueError(
        f"Unknown naming. Expected one of {list(NAMINGS)}; Received: naming={naming!r}"
    )


def _keras_hub_to_canonical_layer(layer: str) -> str:
    if layer == "conv1_conv":
        return "stem.conv"
    if layer == "conv1_bn":
        return "stem.bn"
    m = re.match(r"^stack(\d+)_block(\d+)_(\d)_(conv|bn)$", layer)
    if not m:
        return layer  # reported as unexpected by the canonical check
    stack, block, index, kind = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
    prefix = f"layer{stack + 1}.{block}"
    if index == "0":
        return f"{prefix}.downsample.{kind}"
    return f"{prefix}.{kind}{index}"


def from_canonical(weights: dict, naming: str) -> dict:
    """Canonical weights in `naming` (the inverse of `to_canonical`)."""
    if naming == "canonical":
        return dict(weights)
    if naming != "torchvision":
        raise ValueError(
            "Unsupported naming for export. Expected one of ['canonical', 'torchvision']; "
            f"Received: naming={naming!r}"
        )
    out = {}
    for key, value in weights.items():
        name, param = key.rsplit(".", 1)
        value = np.asarray(value)
        if name == "fc":
            out[f"fc.{'weight' if param == 'kernel' else 'bias'}"] = (
                value.T if param == "kernel" else value
            )
            continue
        torch_name = {"stem.conv": "conv1", "stem.bn": "bn1"}.get(name) or name.replace(
            ".downsample.conv", ".downsample.0"
        ).replace(".downsample.bn", ".downsample.1")
        if param in _CANONICAL_BN:
            out[f"{torch_name}.{_CANONICAL_BN[param]}"] = value
        elif param == "kernel":
            out[f"{torch_name}.weight"] = np.transpose(value, (3, 2, 0, 1))  # HWIO -> OIHW
        else:
            out[f"{torch_name}.{param}"] = value
    return out


def from_keras_hub_model(backbone) -> dict:
    """{`<layer>/<variable>`: array} of a keras-hub `ResNetBackbone` (an instance)."""
    out = {}
    for layer in backbone.layers:
        for variable in layer.weights:
            name = getattr(variable, "path", variable.name).split("/")[-1].split(":")[0]
            out[f"{layer.name}/{name}"] = np.asarray(variable.numpy())
    return out
