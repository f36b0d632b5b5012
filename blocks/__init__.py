"""resnet-blocks: interchangeable ResNet BasicBlock implementations for TensorFlow/Keras.

    import blocks
    model = blocks.resnet18("xla", seed=0)           # any name in blocks.VARIANTS
    blocks.save_weights(model, "w.npz")
    other = blocks.resnet18("functional")
    blocks.load_weights(other, "w.npz")               # same function, another implementation
    blocks.pick()                                     # which variant is fastest here?

The package is in two layers, imports going one way: the model library (`archs`, `layers`,
`registry`, `variants/`, `models`, `auto`, `weights`, how to run a model: `executions`, `steps`
and the serving `engines/`, and `checks`, `kernels`, `_compat`) and the measuring side
(`blocks.measure`: workloads, devices, timing, statistics, workers, pick, cache, report),
which uses the library. This module names the public API and imports each piece on first use, so
that `import blocks` (and `python -m blocks --help`) does not load TensorFlow.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "TF_VERSION": "blocks._compat",
    "KERAS_VERSION": "blocks._compat",
    "IS_KERAS3": "blocks._compat",
    "DTYPE_POLICIES": "blocks.checks",
    "ARCHS": "blocks.archs",
    "STAGES": "blocks.archs",
    "Arch": "blocks.archs",
    "StemSpec": "blocks.archs",
    "BlockArgs": "blocks.layers",
    "distribute_strategy": "blocks.distribute",
    "DeviceError": "blocks.kernels",
    "Registry": "blocks.registry",
    "Variant": "blocks.registry",
    "InferenceOnlyError": "blocks.registry",
    "UnknownVariantError": "blocks.registry",
    "VARIANTS": "blocks.variants",
    "register": "blocks.variants",
    "get_variant": "blocks.variants",
    "ResNet": "blocks.models",
    "FunctionalResNet": "blocks.models",
    "build_resnet": "blocks.models",
    "canonical_variables": "blocks.weights",
    "export_weights": "blocks.weights",
    "import_weights": "blocks.weights",
    "initial_weights": "blocks.weights",
    "load_weights": "blocks.weights",
    "read_weights": "blocks.weights",
    "save_weights": "blocks.weights",
    "pick": "blocks.measure.picker",
    "cached_pick": "blocks.measure.picker",
    "compiled_step": "blocks.steps",
    "export": "blocks.engines",
    "EngineError": "blocks.engines",
    "ENGINES": "blocks.executions",
    "EXECUTIONS": "blocks.executions",
    "PickResult": "blocks.measure.result",
    "PickError": "blocks.measure.picker",
    "AutoVariantWarning": "blocks.measure.auto",
}
# The entry points also take variant="auto" (the measured winner): the library's builders, with
# the measuring side looking the winner up (imported only when "auto" is asked for).
_ENTRY_POINTS = ("resnet18", "resnet34")

__all__ = sorted([*_API, *_ENTRY_POINTS])


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
    elif name in _ENTRY_POINTS:
        builder = getattr(importlib.import_module("blocks.models"), name)
        value = importlib.import_module("blocks.auto").takes_auto(builder, _resolve_auto)
    else:
        raise AttributeError(f"module 'blocks' has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def _resolve_auto(**request):
    """The configuration variant="auto" builds: the measuring side's pick cache."""
    return importlib.import_module("blocks.measure.auto").resolve_auto(**request)


def __dir__():
    return sorted(set(globals()) | set(__all__))
