"""`variant="auto"`: build the variant `blocks.pick` found fastest here, and say if this process
runs another runtime than the one it was fastest in.

The model library knows nothing of measuring; this module wraps its entry points
(`blocks.resnet18`, `blocks.resnet34`) so that "auto" is looked up in the pick cache first. The
model remembers the picked configuration (`model.picked`), so `blocks.compiled_step(model)`
compiles it the way it was picked.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import Optional

from blocks import _compat, cpu
from blocks.archs import get_arch
from blocks.measure import picker
from blocks.measure.runtimes import get as get_runtime
from blocks.measure.workload import REFERENCE, Budget, Config, SearchSpace, Workload
from blocks.models import input_shape_for, resolve_policy

AUTO = "auto"


class AutoVariantWarning(UserWarning):
    """`variant="auto"` found no cached pick (and used the reference), or this process runs
    another runtime than the pick's winner was fastest in."""


def runtime_mismatch(config: Config) -> Optional[str]:
    """Why this process does not run `config`'s runtime, or None."""
    wanted = get_runtime(config.runtime)
    picked_on = cpu.onednn_on(wanted.environ({}))
    if picked_on == cpu.onednn_on():
        return None
    state = "on" if cpu.onednn_on() else "off"
    fix = " ".join(wanted.exports()) or f"unset {cpu.ONEDNN_VAR}"
    return (
        f"the picked configuration {config.label} was fastest with oneDNN "
        f"{'on' if picked_on else 'off'}, but this process has it {state}: set {fix} before "
        "TensorFlow is imported"
    )


def resolve_auto(*, arch, input_shape, dtype_policy, pick_on_miss: bool) -> Config:
    """The cached winner for ResNet inference at batch 64 on the default device.

    On a miss: measure first if `pick_on_miss`, otherwise warn and use the reference.
    """
    policy = resolve_policy(dtype_policy).name
    # Mode and batch size: a pick's defaults, the workload most users run.
    workload = picker.workload_for(dtype_policy=policy, arch=arch, input_shape=input_shape)
    hit = picker.cached_pick_for(workload)  # whatever candidate space it raced
    if hit is None and pick_on_miss:
        hit = picker.measure(workload, SearchSpace(), Budget())
    if hit is not None and hit.winner is not None:
        config = hit.winner_config
        problem = runtime_mismatch(config)
        if problem:
            warnings.warn(f"variant='auto': {problem}", AutoVariantWarning, stacklevel=4)
        return config
    h, w, _ = input_shape
    others = sorted({Workload.from_json(r.workload).label for r in picker.cached_picks()})
    warnings.warn(
        f"variant='auto': no cached pick for {workload.device}, arch={arch!r}, {h}x{w}, "
        f"{policy}, {workload.mode} batch {workload.batch_size} (TF {_compat.TF_VERSION}); using "
        f"{REFERENCE.variant!r}. Run `python -m blocks pick --arch {arch} --image-size {h} "
        f"--dtype-policy {policy}` once, or pass pick_on_miss=True. Cached here: "
        + ("; ".join(others) if others else "none"),
        AutoVariantWarning,
        stacklevel=4,
    )
    return REFERENCE


def with_auto(entry_point):
    """`entry_point(variant, **options)` that also takes variant="auto" and `pick_on_miss`."""

    @functools.wraps(entry_point)
    def build(variant="subclassed", *, pick_on_miss: bool = False, **options):
        if variant != AUTO:
            return entry_point(variant, **options)
        arch = get_arch(options.get("arch", "seed"))
        fmt = options.get("input_format", "channels_last")
        shape = input_shape_for(arch, options.get("input_shape"), fmt)
        hwc = shape if fmt == "channels_last" else (shape[1], shape[2], shape[0])
        config = resolve_auto(
            arch=arch.name,
            input_shape=hwc,
            dtype_policy=options.get("dtype_policy"),
            pick_on_miss=pick_on_miss,
        )
        model = entry_point(config.variant, **options)
        model.picked = config  # read by blocks.compiled_step
        return model

    signature = inspect.signature(entry_point)
    extra = inspect.Parameter("pick_on_miss", inspect.Parameter.KEYWORD_ONLY, default=False)
    build.__signature__ = signature.replace(parameters=[*signature.parameters.values(), extra])
    build.__doc__ = (entry_point.__doc__ or "") + (
        '\n\n    variant="auto" builds the variant `blocks.pick` found fastest for this device, '
        "arch,\n    input shape and dtype policy (inference, batch 64), from the pick cache; with "
        "no cached\n    pick it warns and builds the reference, or measures first if "
        "pick_on_miss=True.\n    The model's `picked` attribute is the whole configuration."
    )
    return build
