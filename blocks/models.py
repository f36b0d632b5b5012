"""One builder for every variant: ResNet18/34 from a stage table, and single-block models."""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from blocks import _compat
from blocks._compat import keras
from blocks.archs import Arch, get_arch, plan, stem_output_size
from blocks.layers import (
    Entry,
    build_chain,
    channel_axis,
    head_layers,
    normalize_data_format,
    stem_layers,
)
from blocks.registry import VARIANTS, InferenceOnlyError, get_variant

DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
# Also accepted, for numerical references (the tests' ground truth); no variant is tuned for it.
REFERENCE_POLICY = "float64"
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def resolve_policy(dtype_policy: Optional[str]):
    """A policy object for one of DTYPE_POLICIES; None means Keras's global policy.

    The policy is handed to each layer, never installed globally.
    """
    name = _compat.global_policy_name() if dtype_policy is None else dtype_policy
    if name not in DTYPE_POLICIES and name != REFERENCE_POLICY:
        origin = "the global Keras policy" if dtype_policy is None else "dtype_policy"
        raise ValueError(
            f"Unsupported dtype policy ({origin}). Expected one of {list(DTYPE_POLICIES)}; "
            f"Received: dtype_policy={name!r}"
        )
    return _compat.policy(name)


def _format_shape(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def check_input_shape(input_shape, input_format: str, arch: Optional[Arch] = None) -> tuple:
    """Validate a model's per-example input shape, (H, W, C) or (C, H, W) by `input_format`."""

    def is_size(d):
        return d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0)

    ok = (
        isinstance(input_shape, (tuple, list))
        and len(input_shape) == 3
        and all(is_size(d) for d in input_shape)
    )
    shape = tuple(None if d is None else int(d) for d in input_shape) if ok else ()
    layout = (
        "(height, width, channels)"
        if input_format == "channels_last"
        else "(channels, height, width)"
    )
    if not ok:
        raise ValueError(
            f"Invalid input_shape. Expected 3 positive ints {layout} for "
            f"input_format={input_format!r}; Received: input_shape={input_shape!r}"
        )
    channels = shape[channel_axis(input_format)]
    if channels is None:
        raise ValueError(
            f"Invalid input_shape. The channel count must be known, {layout}; "
            f"Received: input_shape={input_shape!r}"
        )
    if arch is not None:
        spatial = shape[:2] if input_format == "channels_last" else shape[1:]
        for size in spatial:
            if size is not None and not stem_output_size(arch.stem, size):
                raise ValueError(
                    f"Invalid input_shape. The {arch.name!r} stem needs images of at least "
                    f"{arch.stem.kernel_size}x{arch.stem.kernel_size} pixels; "
                    f"Received: input_shape={input_shape!r}"
                )
    return shape


def check_images(x, *, expected: tuple, input_format: str, who: str):
    """Raise ValueError unless `x` is a float batch of images of per-example shape `expected`."""
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        x = np.asarray(x)
    shape = tuple(x.shape)
    try:
        dtype = tf.as_dtype(x.dtype)
    except TypeError:
        dtype = None
    layout = (
        "(batch, height, width, channels)"
        if input_format == "channels_last"
        else "(batch, channels, height, width)"
    )
    want = f"{layout} = {_format_shape((None,) + tuple(expected))} [input_format={input_format!r}]"
    received = (
        f"input with shape {_format_shape(shape)} and dtype {getattr(dtype, 'name', x.dtype)}"
    )
    if len(shape) != 4:
        raise ValueError(
            f"Invalid input rank for {who}: expected a 4D batch of images {want}; "
            f"Received: {received}"
        )
    axis = channel_axis(input_format)  # in the batch; the per-example shape lacks axis 0
    channels = expected[-1] if input_format == "channels_last" else expected[0]
    if shape[axis] is not None and shape[axis] != channels:
        raise ValueError(
            f"Invalid input channels for {who}: expected {channels} channels on axis "
            f"{axis % 4}, {want}; Received: {received}"
        )
    for got, want_size in zip(shape[1:], expected):
        if got is not None and want_size is not None and got != want_size:
            raise ValueError(f"Invalid input size for {who}: expected {want}; Received: {received}")
    if dtype is None or not dtype.is_floating:
        raise ValueError(
            f"Invalid input dtype for {who}: expected a floating-point dtype "
            f"({', '.join(FLOAT_DTYPES)}); Received: {received}. Cast (and scale) images "
            f"first, e.g. tf.cast(images, tf.float32) / 255."
        )


class _ChecksImages:
    """Checks the images a model is called on before Keras sees them, alike in every variant."""

    def __call__(self, inputs, *args, **kwargs):
        training = kwargs.get("training", args[0] if args else None)
        if training is True and self.variant in VARIANTS and not VARIANTS[self.variant].trainable:
            raise InferenceOnlyError(
                f"Variant {self.variant!r} is inference-only; Received: training=True. Train "
                "another variant and move its weights here with blocks.export_weights / "
                "blocks.import_weights."
            )
        check_images(
            inputs,
            expected=self.expected_input_shape,
            input_format=self.input_format,
            who=f"{self.name} (variant {self.variant!r})",
        )
        return super().__call__(inputs, *args, **kwargs)


def _block_kwargs(arch: Arch, data_format: str, policy) -> dict:
    return dict(
        use_bias=arch.use_bias,
        shortcut_bn=arch.shortcut_bn,
        padding=arch.padding,
        bn_momentum=arch.bn_momentum,
        bn_epsilon=arch.bn_epsilon,
        data_format=data_format,
        dtype=policy,
    )


@_compat.register_serializable(package="blocks")
class ResNet(_ChecksImages, keras.Model):
    """A ResNet as a subclassed `keras.Model`: `call` runs entry, stem, blocks and head in order.

    Used by variants registered with `model="subclassed"`; build it with `blocks.resnet18`.
    """

    def __init__(
        self,
        variant="subclassed",
        depth=18,
        arch="seed",
        input_shape=None,
        num_classes=None,
        input_format="channels_last",
        dtype_policy="float32",
        name=None,
        **kwargs,
    ):
        super().__init__(name=name or f"resnet{depth}", **kwargs)
        spec = get_variant(variant)
        arch_spec = get_arch(arch)
        policy = resolve_policy(dtype_policy)
        self.variant, self.depth, self.arch = spec.name, depth, arch_spec.name
        self.input_format = normalize_data_format(input_format, "input_format")
        self.expected_input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.dtype_policy_name = _compat.policy_name(policy)
        fmt = spec.data_format
        self.entry = Entry(self.input_format, fmt, variant=spec.name, dtype=policy, name="entry")
        self.stem = (spec.stem or stem_layers)(
            arch_spec.stem,
            data_format=fmt,
            bn_momentum=arch_spec.bn_momentum,
            bn_epsilon=arch_spec.bn_epsilon,
            dtype=policy,
        )
        kwargs = _block_kwargs(arch_spec, fmt, policy)
        self.body = [spec.block(p.filters, p.strides, name=p.name, **kwargs) for p in plan(depth)]
        self.head = head_layers(num_classes, data_format=fmt, dtype=policy)

    def _chain(self) -> list:
        return [self.entry, *self.stem, *self.body, *self.head]

    def build(self, input_shape):
        build_chain(self._chain(), input_shape)
        self.built = True

    def call(self, inputs, training=None):
        x = inputs
        for layer in self._chain():
            x = layer(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        return {
            "variant": self.variant,
            "depth": self.depth,
            "arch": self.arch,
            "input_shape": list(self.expected_input_shape),
            "num_classes": self.num_classes,
            "input_format": self.input_format,
            "dtype_policy": self.dtype_policy_name,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        model = cls(**config)
        model.build((None, *model.expected_input_shape))
        return model


@_compat.register_serializable(package="blocks")
class FunctionalResNet(_ChecksImages, keras.Model):
    """A functional `keras.Model` (inputs -> outputs graph) that checks its images like every model.

    Used by variants registered with `model="functional"`; build it with `blocks.resnet18`. It
    keeps Functional's constructor, so Keras 2 and 3 save and revive it as a functional graph;
    what it knows beyond the graph (variant, input layout) lives in its `entry` layer's config.
    """

    @property
    def _entry(self):
        return self.get_layer("entry")

    @property
    def variant(self):
        return self._entry.variant

    @property
    def input_format(self):
        return self._entry.input_format

    @property
    def expected_input_shape(self):
        return tuple(self.inputs[0].shape[1:])


def _functional_model(inputs, outputs, *, name):
    return FunctionalResNet(inputs=inputs, outputs=outputs, name=name)


def build_resnet(
    variant="subclassed",
    depth=18,
    *,
    arch="seed",
    input_shape=None,
    num_classes=None,
    dtype_policy=None,
    seed=None,
    input_format="channels_last",
    pick_on_miss=False,
):
    """ResNet of `depth` (a key of `blocks.archs.STAGES`) built from `variant`'s block.

    See `blocks.resnet18` for the arguments.
    """
    arch_spec = get_arch(arch)
    input_format = normalize_data_format(input_format, "input_format")
    if input_shape is None:
        h, w, c = arch_spec.input_shape
        input_shape = (h, w, c) if input_format == "channels_last" else (c, h, w)
    shape = check_input_shape(input_shape, input_format, arch_spec)
    if variant == "auto":
        from blocks.picker import resolve_auto

        hwc = shape if input_format == "channels_last" else (shape[1], shape[2], shape[0])
        variant = resolve_auto(
            arch=arch_spec.name,
            input_shape=hwc,
            dtype_policy=dtype_policy,
            pick_on_miss=pick_on_miss,
        )
    spec = get_variant(variant)
    if num_classes is None:
        num_classes = arch_spec.num_classes
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(
            f"Invalid num_classes. Expected a positive int; Received: num_classes={num_classes!r}"
        )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(
            f"Invalid seed. Expected a non-negative int or None; Received: seed={seed!r}"
        )
    policy = resolve_policy(dtype_policy)
    if spec.check_device is not None:
        spec.check_device(policy.compute_dtype)

    if spec.model == "subclassed":
        model = ResNet(
            spec.name,
            depth,
            arch_spec,
            shape,
            num_classes,
            input_format,
            _compat.policy_name(policy),
        )
        model.build((None, *shape))
    else:
        fmt = spec.data_format
        inputs = keras.Input(shape=shape, name="images")
        x = Entry(input_format, fmt, variant=spec.name, dtype=policy, name="entry")(inputs)
        for layer in (spec.stem or stem_layers)(
            arch_spec.stem,
            data_format=fmt,
            bn_momentum=arch_spec.bn_momentum,
            bn_epsilon=arch_spec.bn_epsilon,
            dtype=policy,
        ):
            x = layer(x)
        kwargs = _block_kwargs(arch_spec, fmt, policy)
        for p in plan(depth):
            x = spec.block(p.filters, p.strides, name=p.name, **kwargs)(x)
        for layer in head_layers(num_classes, data_format=fmt, dtype=policy):
            x = layer(x)
        model = _functional_model(inputs, x, name=f"resnet{depth}")
    if seed is not None:
        from blocks.weights import import_weights, initial_weights

        import_weights(model, initial_weights(model, seed))
    return model


def resnet18(
    variant="subclassed",
    *,
    arch="seed",
    input_shape=None,
    num_classes=None,
    dtype_policy=None,
    seed=None,
    input_format="channels_last",
    pick_on_miss=False,
):
    """ResNet18 built from a registered block variant.

    Args:
        variant: a name in `blocks.VARIANTS` (or a `Variant`), or "auto": the variant
            `blocks.pick` found fastest for this device, arch, input shape and dtype policy
            (inference, batch 64), from the pick cache.
        arch: "seed" (the article's network, 32x32x3 -> 10 logits by default) or "imagenet"
            (the standard ResNet18, 224x224x3 -> 1000 logits).
        input_shape: per-example shape in `input_format` order; defaults to the arch's.
        num_classes: logits out; defaults to the arch's.
        dtype_policy: "float32", "mixed_bfloat16" or "mixed_float16", applied to this model's
            layers only; None takes Keras's global policy.
        seed: if given, initial weights drawn from it, identical in every variant.
        input_format: layout of the images the model is called on; every variant takes NHWC
            ("channels_last") by default and transposes once where its layout differs.
        pick_on_miss: with variant="auto" and no cached pick, measure first (about a minute or
            two) instead of warning and using "subclassed".

    Returns:
        A built `keras.Model`, called as `model(images, training=...)`, returning float32 logits.

    Raises:
        ValueError: an unknown variant, arch or dtype policy, or a bad shape or count.
        blocks.devices.DeviceError: the current device lacks a kernel the variant needs.
    """
    return build_resnet(
        variant,
        18,
        arch=arch,
        input_shape=input_shape,
        num_classes=num_classes,
        dtype_policy=dtype_policy,
        seed=seed,
        input_format=input_format,
        pick_on_miss=pick_on_miss,
    )


def resnet34(
    variant="subclassed",
    *,
    arch="seed",
    input_shape=None,
    num_classes=None,
    dtype_policy=None,
    seed=None,
    input_format="channels_last",
    pick_on_miss=False,
):
    """ResNet34: `resnet18` with stages of (3, 4, 6, 3) blocks; same arguments."""
    return build_resnet(
        variant,
        34,
        arch=arch,
        input_shape=input_shape,
        num_classes=num_classes,
        dtype_policy=dtype_policy,
        seed=seed,
        input_format=input_format,
        pick_on_miss=pick_on_miss,
    )


def block_model(
    variant,
    input_shape,
    filters,
    strides=1,
    *,
    arch="seed",
    dtype_policy=None,
    input_format="channels_last",
    name="block",
):
    """One BasicBlock of `variant` as a functional model taking NHWC images (for tests/benchmarks).

    The block gets `arch`'s options (bias, shortcut BN, padding, BN constants); its weights export
    under `block.conv1.kernel`, ... like a ResNet's under `layer1.0.conv1.kernel`.
    """
    spec = get_variant(variant)
    arch_spec = get_arch(arch)
    input_format = normalize_data_format(input_format, "input_format")
    shape = check_input_shape(input_shape, input_format)
    policy = resolve_policy(dtype_policy)
    if spec.check_device is not None:
        spec.check_device(policy.compute_dtype)
    inputs = keras.Input(shape=shape, name="images")
    x = Entry(input_format, spec.data_format, variant=spec.name, dtype=policy, name="entry")(inputs)
    x = spec.block(
        filters, strides, name=name, **_block_kwargs(arch_spec, spec.data_format, policy)
    )(x)
    # Hand results back in the caller's layout, so every variant's output compares directly.
    x = Entry(spec.data_format, input_format, dtype=policy, name="exit")(x)
    return _functional_model(inputs, x, name=f"{spec.name}_block")
