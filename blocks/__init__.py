"""resnet-blocks: interchangeable ResNet BasicBlock implementations for TensorFlow/Keras.

import blocks
model = blocks.resnet18("xla", seed=0)           # any name in blocks.VARIANTS
blocks.save_weights(model, "w.npz")
other = blocks.resnet18("functional")
blocks.load_weights(other, "w.npz")               # same function, another implementation
"""

from blocks import variants as _variants  # noqa: F401  (registers the built-in variants)
from blocks._compat import IS_KERAS3, KERAS_VERSION, TF_VERSION
from blocks.archs import ARCHS, STAGES, Arch, StemSpec
from blocks.devices import DeviceError
from blocks.layers import BlockArgs
from blocks.models import (
    DTYPE_POLICIES,
    FunctionalResNet,
    ResNet,
    block_model,
    build_resnet,
    resnet18,
    resnet34,
)
from blocks.registry import (
    VARIANTS,
    InferenceOnlyError,
    Registry,
    UnknownVariantError,
    Variant,
    get_variant,
    register,
)
from blocks.weights import (
    canonical_variables,
    export_weights,
    import_weights,
    initial_weights,
    load_weights,
    read_weights,
    save_weights,
)

__version__ = "0.1.0"

__all__ = [
    "ARCHS",
    "Arch",
    "BlockArgs",
    "DTYPE_POLICIES",
    "DeviceError",
    "FunctionalResNet",
    "IS_KERAS3",
    "InferenceOnlyError",
    "KERAS_VERSION",
    "Registry",
    "ResNet",
    "STAGES",
    "StemSpec",
    "TF_VERSION",
    "UnknownVariantError",
    "VARIANTS",
    "Variant",
    "block_model",
    "build_resnet",
    "canonical_variables",
    "export_weights",
    "get_variant",
    "import_weights",
    "initial_weights",
    "load_weights",
    "read_weights",
    "register",
    "resnet18",
    "resnet34",
    "save_weights",
]
