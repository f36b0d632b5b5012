"""`variant="auto"`: build the variant `blocks.pick` found fastest here.

The model library knows nothing of measuring; this module wraps its entry points
(`blocks.resnet18`, `blocks.resnet34`) so that "auto" is looked up in the pick cache first.
"""

from __future__ import annotations

import functools
import inspect
import warnings

from blocks import _compat
from blocks.archs import get_arch
from blocks.measure import picker
from blocks.models import input_shape_for, resolve_policy

AUTO = "auto"


class AutoVariantWarning(UserWarning):
    """`variant="auto"` found no cached pick and fell back to the default variant."""


def resolve_auto(*, arch, input_shape, dtype_policy, pick_on_miss: bool) -> str:
    """The cached winner for ResNet inference at batch 64 on the default device.

    On a miss: measure first if `pick_on_miss`, otherwise warn and use the reference variant.
    """
    policy = resolve_policy(dtype_policy).name
    options = dict(
        mode="inference", batch_size=64, dtype_policy=policy, arch=arch, input_shape=input_shape
    )
    hit = picker.cached(**options)
    if hit is not None and hit.winner in picker.VARIANTS:
        return hit.winner
    if pick_on_miss:
        return picker.pick(**options).winner
    h, w, _ = input_shape
    warnings.warn(
        f"variant='auto': no cached pick for {picker.default_device()}, arch={arch!r}, {h}x{w}, "
        f"{policy}, inference batch 64 (TF {_compat.TF_VERSION}); using "
        f"{picker.DEFAULT_VARIANT!r}. Run `python -m blocks pick --arch {arch} --image-size {h} "
        f"--dtype-policy {policy}` once, or pass pick_on_miss=True.",
        AutoVariantWarning,
        stacklevel=4,
    )
    return picker.DEFAULT_VARIANT


def with_auto(entry_point):
    """`entry_point(variant, **options)` that also takes variant="auto" and `pick_on_miss`."""

    @functools.wraps(entry_point)
    def build(variant="subclassed", *, pick_on_miss: bool = False, **options):
        if variant == AUTO:
            arch = get_arch(options.get("arch", "seed"))
            fmt = options.get("input_format", "channels_last")
            shape = input_shape_for(arch, options.get("input_shape"), fmt)
            hwc = shape if fmt == "channels_last" else (shape[1], shape[2], shape[0])
            variant = resolve_auto(
                arch=arch.name,
                input_shape=hwc,
                dtype_policy=options.get("dtype_policy"),
                pick_on_miss=pick_on_miss,
            )
        return entry_point(variant, **options)

    signature = inspect.signature(entry_point)
    extra = inspect.Parameter("pick_on_miss", inspect.Parameter.KEYWORD_ONLY, default=False)
    build.__signature__ = signature.replace(parameters=[*signature.parameters.values(), extra])
    build.__doc__ = (entry_point.__doc__ or "") + (
        '\n\n    variant="auto" builds the variant `blocks.pick` found fastest for this device, '
        "arch,\n    input shape and dtype policy (inference, batch 64), from the pick cache; with "
        "no cached\n    pick it warns and builds the reference, or measures first if "
        "pick_on_miss=True."
    )
    return build
