"""One builder for every variant and depth: a ResNet from an arch, a stage table and a block.

`build_resnet` is the builder; `resnet18` and `resnet34` are thin entry points over it. A variant
registered with `model="subclassed"` gets a `ResNet` (a subclassed `keras.Model` whose `call` runs
the layers in order); one with `model="functional"` gets a `FunctionalResNet` (a graph of Keras
symbolic tensors). Both check the images they are called on the same way.
"""

from __future__ import annotations

import inspect
from typing import Optional, Sequence, Union

import numpy as np

from blocks import _compat, checks
from blocks._compat import keras
from blocks.archs import Arch, get_arch, plan, stem_output_size
from blocks.layers import Entry, build_chain, default_stem, head_layers, outer_dtype
from blocks.registry import Variant, get_variant
from blocks.variants import VARIANTS
from blocks.weights import import_weights, initial_weights


def resolve_policy(dtype_policy: Optional[str]):
    """A Keras policy object for a name of DTYPE_POLICIES; None means Keras's global policy.

    The policy is handed to each layer, never installed globally.
    """
    if dtype_policy is None:
        name = checks.dtype_policy(_compat.global_policy_name(), origin="the global Keras policy")
    else:
        name = checks.dtype_policy(dtype_policy)
    return _compat.policy(name)


def input_shape_for(arch: Arch, input_shape, input_format: str) -> tuple:
    """The per-example input shape: `input_shape` checked, or the arch's in `input_format`."""
    if input_shape is None:
        h, w, c = arch.input_shape
        input_shape = (h, w, c) if input_format == "channels_last" else (c, h, w)
    shape = checks.image_shape(input_shape, input_format)
    spatial = shape[:2] if input_format == "channels_last" else shape[1:]
    for size in spatial:
        if size is not None and not stem_output_size(arch.stem, size):
            raise ValueError(
                f"Invalid input_shape. The {arch.name!r} stem needs images of at least "
                f"{arch.stem.kernel_size}x{arch.stem.kernel_size} pixels; "
                f"Received: input_shape={input_shape!r}"
            )
    return shape


class _ChecksImages:
    """Checks the images a model is called on before Keras sees them, alike in every variant."""

    def __call__(self, inputs, *args, **kwargs):
        training = kwargs.get("training", args[0] if args else None)
        if self.variant in VARIANTS:
            VARIANTS[self.variant].check_training(training)
        x = inputs if hasattr(inputs, "shape") and hasattr(inputs, "dtype") else np.asarray(inputs)
        checks.images(
            x,
            expected=self.expected_input_shape,
            input_format=self.input_format,
            who=f"{self.name} (variant {self.variant!r})",
        )
        return super().__call__(inputs, *args, **kwargs)


def _stem_and_blocks(spec: Variant, arch: Arch, depth: int, policy) -> list:
    """The stem's layers, then every block of the stage table, in the variant's layout."""
    fmt = spec.data_format
    stem = (spec.stem or default_stem)(
        arch.stem,
        data_format=fmt,
        bn_momentum=arch.bn_momentum,
        bn_epsilon=arch.bn_epsilon,
        dtype=policy,
    )
    block_options = dict(
        use_bias=arch.use_bias,
        shortcut_bn=arch.shortcut_bn,
        padding=arch.padding,
        bn_momentum=arch.bn_momentum,
        bn_epsilon=arch.bn_epsilon,
        data_format=fmt,
        dtype=policy,
    )
    return stem + [
        spec.block(p.filters, p.strides, name=p.name, **block_options) for p in plan(depth)
    ]


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
        policy = resolve_policy(dtype_policy)
        # The model's own dtype is that of its images (float32; float64 in the reference).
        kwargs.setdefault("dtype", outer_dtype(policy))
        super().__init__(name=name or f"resnet{depth}", **kwargs)
        spec = get_variant(variant)
        arch_spec = get_arch(arch)
        self.variant, self.depth, self.arch = spec.name, depth, arch_spec.name
        self.input_format = checks.data_format(input_format, "input_format")
        self.expected_input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.dtype_policy_name = policy.name
        self.entry = Entry(
            self.input_format, spec.data_format, variant=spec.name, dtype=policy, name="entry"
        )
        layers = _stem_and_blocks(spec, arch_spec, depth, policy)
        n_stem = len(layers) - len(plan(depth))
        self.stem, self.body = layers[:n_stem], layers[n_stem:]
        self.head = head_layers(num_classes, data_format=spec.data_format, dtype=policy)

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
    what it knows beyond the graph (variant, input layout) is kept in the config of its `entry`
    layer, which a saved graph carries along.
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


def _assemble(spec, depth, arch_spec, shape, num_classes, input_format, policy) -> keras.Model:
    """The built model of checked arguments: a `ResNet` for a subclassed variant, else a
    functional graph of the same layers."""
    if spec.model == "subclassed":
        model = ResNet(
            variant=spec.name,
            depth=depth,
            arch=arch_spec,
            input_shape=shape,
            num_classes=num_classes,
            input_format=input_format,
            dtype_policy=policy.name,
        )
        model.build((None, *shape))
        return model
    inputs = keras.Input(shape=shape, dtype=outer_dtype(policy), name="images")
    x = Entry(input_format, spec.data_format, variant=spec.name, dtype=policy, name="entry")(inputs)
    for layer in _stem_and_blocks(spec, arch_spec, depth, policy):
        x = layer(x)
    for layer in head_layers(num_classes, data_format=spec.data_format, dtype=policy):
        x = layer(x)
    return FunctionalResNet(inputs=inputs, outputs=x, name=f"resnet{depth}")


def build_resnet(
    variant: Union[str, Variant] = "subclassed",
    depth: int = 18,
    *,
    arch: Union[str, Arch] = "seed",
    input_shape: Optional[Sequence[Optional[int]]] = None,
    num_classes: Optional[int] = None,
    dtype_policy: Optional[str] = None,
    seed: Optional[int] = None,
    input_format: str = "channels_last",
) -> keras.Model:
    """A ResNet of `depth` built from a registered block variant; the one builder.

    Args:
        variant: a name in `blocks.VARIANTS`, or a `Variant`. (`blocks.resnet18` also takes
            "auto": the variant `blocks.pick` found fastest here.)
        depth: a key of `blocks.STAGES`: 18 or 34.
        arch: "seed" (the article's network, 32x32x3 -> 10 logits by default) or "imagenet"
            (the standard ResNet, 224x224x3 -> 1000 logits), or an `Arch`.
        input_shape: per-example shape in `input_format` order; defaults to the arch's.
            Height and width may be None (any size).
        num_classes: logits out; defaults to the arch's.
        dtype_policy: "float32", "mixed_bfloat16" or "mixed_float16", applied to this model's
            layers only; None takes Keras's global policy. Logits are float32 under every policy.
        seed: if given, initial weights drawn from it, identical in every variant.
        input_format: layout of the images the model is called on; every variant takes NHWC
            ("channels_last") by default and transposes once where its layout differs.

    Returns:
        A built `keras.Model`, called as `model(images, training=...)`, returning float32 logits.

    Raises:
        ValueError: an unknown variant, arch or dtype policy, or a bad shape, count or seed.
        blocks.DeviceError: the current device lacks a kernel the variant needs.
    """
    spec = get_variant(variant)
    arch_spec = get_arch(arch)
    input_format = checks.data_format(input_format, "input_format")
    shape = input_shape_for(arch_spec, input_shape, input_format)
    num_classes = checks.positive_int(
        arch_spec.num_classes if num_classes is None else num_classes, "num_classes"
    )
    seed = checks.non_negative_int(seed, "seed", allow_none=True)
    policy = resolve_policy(dtype_policy)
    if spec.check_device is not None:
        spec.check_device(policy.compute_dtype)
    model = _assemble(spec, depth, arch_spec, shape, num_classes, input_format, policy)
    if seed is not None:
        import_weights(model, initial_weights(model, seed))
    return model


def _builder_signature(entry_point):
    """Give an entry point the builder's signature less `depth`, so help() shows every option."""
    builder = inspect.signature(build_resnet)
    entry_point.__signature__ = builder.replace(
        parameters=[p for name, p in builder.parameters.items() if name != "depth"]
    )
    return entry_point


@_builder_signature
def resnet18(variant: Union[str, Variant] = "subclassed", **options) -> keras.Model:
    """ResNet18 from a registered block variant: `build_resnet(variant, 18, **options)`."""
    return build_resnet(variant, 18, **options)


@_builder_signature
def resnet34(variant: Union[str, Variant] = "subclassed", **options) -> keras.Model:
    """ResNet34 (stages of 3, 4, 6, 3 blocks): `build_resnet(variant, 34, **options)`."""
    return build_resnet(variant, 34, **options)
