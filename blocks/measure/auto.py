"""`variant="auto"`: the configuration `blocks.pick` found fastest here, and whether this process
runs another runtime than the one it was fastest in.

The model library knows nothing of measuring: its entry points (`blocks.resnet18`,
`blocks.resnet34`) take "auto" through `blocks.auto.takes_auto`, and the package facade hands them
`resolve_auto`, importing this module only when "auto" is asked for.
"""

from __future__ import annotations

import warnings
from typing import Optional

from blocks import _compat, cpu
from blocks.measure import picker
from blocks.measure.runtimes import get as get_runtime
from blocks.measure.workload import REFERENCE, Budget, Config, SearchSpace, Workload
from blocks.models import resolve_policy


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


def resolve_auto(*, arch, input_shape, dtype_policy, pick_on_miss: bool, precisions=None) -> Config:
    """The cached winner for ResNet inference at batch 64 on the default device, in a precision
    of `precisions` (default: the dtype policy alone: a cached pick whose winner runs another is
    not used unless asked for).

    On a miss: measure first if `pick_on_miss` (racing `precisions`), otherwise warn and use the
    reference.
    """
    policy = resolve_policy(dtype_policy).name
    # Mode and batch size: a pick's defaults, the workload most users run.
    workload = picker.workload_for(dtype_policy=policy, arch=arch, input_shape=input_shape)
    space = SearchSpace(precisions=precisions)
    allowed = space.precisions_for(workload)
    hit = picker.cached_pick_for(workload, allowed)  # whatever candidate space it raced
    if hit is None and pick_on_miss:
        hit = picker.measure(workload, space, Budget())
    if hit is not None and hit.winner is not None:
        config = hit.winner_config
        problem = runtime_mismatch(config)
        if problem:
            warnings.warn(f"variant='auto': {problem}", AutoVariantWarning, stacklevel=5)
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
        stacklevel=5,
    )
    return REFERENCE
