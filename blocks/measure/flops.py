"""Work per image, counted from a model's own layers and the shapes they were built with."""

from __future__ import annotations

import numpy as np

from blocks._compat import built_input_shape, keras
from blocks.weights import leaf_layers

# A training step is one forward and a backward that costs about twice the forward (gradients
# with respect to activations and to weights).
TRAIN_STEP_FACTOR = 3


def forward_flops_per_image(model) -> int:
    """2 x multiply-accumulates of every Conv2D and Dense layer for one image.

    Normalisation, activations, pooling and additions are left out (a few percent), as is usual.
    """
    total = 0
    for _, layer in leaf_layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            in_shape = built_input_shape(layer)
            out_shape = tuple(layer.compute_output_shape(in_shape))
            kh, kw = layer.kernel_size
            if layer.data_format == "channels_first":
                c_in, spatial, c_out = in_shape[1], out_shape[2:], out_shape[1]
            else:
                c_in, spatial, c_out = in_shape[-1], out_shape[1:3], out_shape[-1]
            total += 2 * int(np.prod(spatial)) * c_out * kh * kw * c_in
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * int(np.prod(layer.kernel.shape))
    return total


def flops_per_image(model, mode: str = "inference") -> int:
    forward = forward_flops_per_image(model)
    return forward * (TRAIN_STEP_FACTOR if mode == "train" else 1)


def parameter_count(model) -> dict:
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    total = int(sum(np.prod(v.shape) for v in model.weights))
    return {"trainable": trainable, "total": total}


def table() -> list:
    """The lines of `python -m blocks info`: FLOPs per image and parameters of each depth and
    arch, counted from the built models."""
    from blocks.archs import ARCHS, STAGES
    from blocks.models import build_resnet

    lines = [
        f"{'model':<10} {'arch':<9} {'input':>11} {'classes':>7} {'GFLOP/img':>10} "
        f"{'train GFLOP':>11} {'params':>12} {'+BN stats':>10}"
    ]
    for depth in sorted(STAGES):
        for name, arch in ARCHS.items():
            model = build_resnet("functional", depth, arch=name, dtype_policy="float32")
            fwd = forward_flops_per_image(model) / 1e9
            n = parameter_count(model)
            shape = "x".join(map(str, arch.input_shape))
            lines.append(
                f"{'resnet' + str(depth):<10} {name:<9} {shape:>11} {arch.num_classes:>7} "
                f"{fwd:>10.3f} {fwd * TRAIN_STEP_FACTOR:>11.3f} {n['trainable']:>12,} "
                f"{n['total'] - n['trainable']:>10,}"
            )
    lines.append(
        "GFLOP/img: 2 x multiply-adds of every Conv2D and Dense layer, counted from the built "
        f"model's layer shapes; a training step counts {TRAIN_STEP_FACTOR}x."
    )
    return lines
