"""`variant="auto"` for the entry points, without the library measuring anything.

`takes_auto(entry_point, resolve)` is `entry_point` that also takes variant="auto" and
`pick_on_miss`: `resolve` (the measuring side's, handed in by the package facade) names the
configuration to build, and the model remembers it (`model.picked`), so
`blocks.compiled_step(model)` compiles it the way it was picked.
"""

from __future__ import annotations

import functools
import inspect

from blocks.archs import get_arch
from blocks.models import input_shape_for

AUTO = "auto"


def takes_auto(entry_point, resolve):
    """`entry_point(variant, **options)` that also takes variant="auto" and `pick_on_miss`;
    `resolve(arch=, input_shape=, dtype_policy=, pick_on_miss=, precisions=)` (input_shape as
    height, width, channels) returns the configuration "auto" builds."""

    @functools.wraps(entry_point)
    def build(variant="subclassed", *, pick_on_miss: bool = False, precisions=None, **options):
        if variant != AUTO:
            if precisions is not None:  # else silently meaningless
                raise ValueError(
                    'Invalid precisions. Only variant="auto" takes them (the precisions a '
                    f"cached pick may have chosen); Received: precisions={precisions!r} with "
                    f"variant={variant!r}"
                )
            return entry_point(variant, **options)
        arch = get_arch(options.get("arch", "seed"))
        fmt = options.get("input_format", "channels_last")
        shape = input_shape_for(arch, options.get("input_shape"), fmt)
        hwc = shape if fmt == "channels_last" else (shape[1], shape[2], shape[0])
        config = resolve(
            arch=arch.name,
            input_shape=hwc,
            dtype_policy=options.get("dtype_policy"),
            pick_on_miss=pick_on_miss,
            precisions=precisions,
        )
        if config.precision is not None:  # a precision the caller allowed, and the pick chose
            options = {**options, "dtype_policy": config.precision}
        model = entry_point(config.variant, **options)
        model.picked = config  # read by blocks.compiled_step
        return model

    signature = inspect.signature(entry_point)
    extra = [
        inspect.Parameter("pick_on_miss", inspect.Parameter.KEYWORD_ONLY, default=False),
        inspect.Parameter("precisions", inspect.Parameter.KEYWORD_ONLY, default=None),
    ]
    build.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *extra])
    build.__doc__ = (entry_point.__doc__ or "") + (
        '\n\n    variant="auto" builds the variant `blocks.pick` found fastest for this device, '
        "arch,\n    input shape and dtype policy (inference, batch 64), from the pick cache; with "
        "no cached\n    pick it warns and builds the reference, or measures first if "
        "pick_on_miss=True.\n    The model's `picked` attribute is the whole configuration. A "
        "pick's winner in another\n    precision than dtype_policy is used only where "
        '`precisions` names it (e.g.\n    precisions=("float32", "mixed_bfloat16")); the '
        "model is then built in it."
    )
    return build
