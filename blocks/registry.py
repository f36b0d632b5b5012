"""The one registry of block variants.

A variant is a block constructor with the signature documented on `blocks.layers.BlockArgs`, plus
how a network of such blocks is wired (`model="functional"` or `"subclassed"`) and its data format.
Registering one (see `blocks/variants/`) is all it takes to get ResNet18/34, portable weights,
the property tests and the benchmarks for it.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Mapping
from typing import Callable, Iterator, Optional

from blocks import checks
from blocks._compat import keras

MODEL_KINDS = ("functional", "subclassed")
# Modules that register variants of their own, comma-separated: the command line and every
# measuring worker import them (a variant registered in a user's module is unknown to a fresh
# process until that module is imported there too).
IMPORTS_VAR = "RESNET_BLOCKS_IMPORTS"


@dataclasses.dataclass(frozen=True)
class Variant:
    """A registered way of writing the BasicBlock.

    Attributes:
        name: registry key, e.g. "functional".
        block: `block(filters, strides=1, *, use_bias, shortcut_bn, padding, bn_momentum,
            bn_epsilon, data_format, dtype, name)`, returning a Keras layer (required for
            `model="subclassed"`) or a function of one symbolic tensor (`model="functional"`).
        model: "functional" (a `keras.Model(inputs, outputs)` graph) or "subclassed" (a
            `keras.Model` subclass whose `call` runs the blocks in order).
        data_format: the layout inside the network; the model transposes the input once.
        summary: what the variant is, in one line.
        wins: where it should be the fastest, in one line.
        check_device: `check_device(compute_dtype)`, called before building; raises
            `blocks.DeviceError` if the current device cannot run the variant in that dtype.
        trainable: False for inference-only variants, which refuse `training=True`.
        complexity: how much machinery the variant adds over plain Keras layers (0 = none);
            `blocks.pick` breaks a tie in favour of the lowest.
        stem: optional `stem(spec, *, data_format, bn_momentum, bn_epsilon, dtype)` returning
            the stem as a list of layers to chain, for variants that change it too (default:
            `blocks.layers.default_stem`). Its parameters must keep the `stem.conv.*` and
            `stem.bn.*` canonical names.
    """

    name: str
    block: Callable
    model: str
    data_format: str = "channels_last"
    summary: str = ""
    wins: str = ""
    check_device: Optional[Callable[[str], None]] = None
    trainable: bool = True
    complexity: int = 0
    stem: Optional[Callable] = None

    def check_training(self, training) -> None:
        """InferenceOnlyError if `training` is True and the variant cannot train."""
        if training is True and not self.trainable:
            refuse_training(self.name)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(
                f"Invalid variant name. Expected a Python identifier; Received: name={self.name!r}"
            )
        checks.choice(
            self.model, MODEL_KINDS, "model", what=f"Invalid model kind for variant {self.name!r}"
        )
        checks.data_format(self.data_format)
        if self.model == "subclassed":
            if not (isinstance(self.block, type) and issubclass(self.block, keras.layers.Layer)):
                raise ValueError(
                    f"A subclassed model holds its blocks as layers: variant {self.name!r} needs "
                    f"a keras.layers.Layer subclass as block; Received: block={self.block!r}"
                )


class InferenceOnlyError(ValueError):
    """An inference-only variant (`Variant.trainable=False`) was asked to train."""


def refuse_training(variant: str, why: str = "") -> None:
    """Raise the one InferenceOnlyError, for a model, a layer or a training step."""
    raise InferenceOnlyError(
        f"Variant {variant!r} is inference-only{why}; Received: training=True. Train another "
        "variant and move its weights here with blocks.export_weights / blocks.import_weights."
    )


class UnknownVariantError(KeyError, ValueError):
    """An unknown variant name: a ValueError for callers, a KeyError for Mapping semantics."""

    def __str__(self):
        return str(self.args[0])


class Registry(Mapping):
    """name -> Variant, in registration order; refuses duplicates, lists names on a miss."""

    def __init__(self):
        self._variants: dict = {}

    def register(self, variant: Variant) -> Variant:
        if not isinstance(variant, Variant):
            raise TypeError(f"Expected a blocks.Variant; Received: {variant!r}")
        if variant.name in self._variants:
            raise ValueError(
                f"A variant named {variant.name!r} is already registered "
                f"({self._variants[variant.name].block!r}); "
                f"Received a second one: {variant.block!r}"
            )
        self._variants[variant.name] = variant
        return variant

    def unregister(self, name: str) -> Variant:
        return self._variants.pop(self[name].name)

    def __getitem__(self, name) -> Variant:
        try:
            return self._variants[name]
        except (KeyError, TypeError):
            raise UnknownVariantError(
                f"Unknown variant. Expected one of {list(self._variants)}; "
                f"Received: variant={name!r}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._variants)

    def __len__(self) -> int:
        return len(self._variants)

    def __repr__(self) -> str:
        return f"Registry({list(self._variants)})"


VARIANTS = Registry()
register = VARIANTS.register


def get_variant(variant) -> Variant:
    """The registered Variant for a name (a Variant passes through)."""
    if isinstance(variant, Variant):
        return variant
    return VARIANTS[variant]


def import_user_modules() -> None:
    """Import the modules named in IMPORTS_VAR, which register their variants as they load."""
    for module in filter(None, (m.strip() for m in os.environ.get(IMPORTS_VAR, "").split(","))):
        if module.startswith("."):  # import_module's TypeError would be a traceback
            raise ImportError(f"{module!r} is a relative module name; give its absolute name")
        importlib.import_module(module)
