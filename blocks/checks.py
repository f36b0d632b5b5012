"""Argument checks, in one place: every bad argument gets a ValueError in the Keras form.

"Invalid <what>. Expected <rule>; Received: <name>=<value>". This module is a leaf: it imports
nothing else from the package, and not TensorFlow, so the command line can check its arguments
before TensorFlow loads.
"""

from __future__ import annotations

import math
import numbers
from typing import Iterable, Optional, Sequence

DATA_FORMATS = ("channels_last", "channels_first")
# The policies a model can be built in; "float64" is accepted as well, for numerical references
# (the tests' ground truth), but no variant is tuned for it.
DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
REFERENCE_POLICY = "float64"
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def choice(value, allowed: Iterable, name: str, what: Optional[str] = None):
    """`value` if it is one of `allowed`, else ValueError naming `name` and the allowed values."""
    allowed = list(allowed)
    try:
        ok = value in allowed
    except TypeError:  # an unhashable value against a dict's keys
        ok = False
    if not ok:
        raise ValueError(
            f"{what or f'Invalid {name}'}. Expected one of {allowed}; Received: {name}={value!r}"
        )
    return value


def int_choice(value, allowed: Iterable[int], name: str) -> int:
    """`choice` for ints: True, 2.0 or (2, 2) are refused even where they compare equal."""
    allowed = list(allowed)
    if not _is_int(value) or value not in allowed:
        raise ValueError(f"Invalid {name}. Expected one of {allowed}; Received: {name}={value!r}")
    return int(value)


def choices(values: Sequence, allowed: Iterable, name: str) -> list:
    """Every item of `values` checked with `choice`; at least one."""
    values = list(values)
    if not values:
        raise ValueError(f"Invalid {name}. Expected at least one of {list(allowed)}; Received: []")
    return [choice(v, allowed, name) for v in values]


def positive_int(value, name: str) -> int:
    if not _is_int(value) or value <= 0:
        raise ValueError(f"Invalid {name}. Expected a positive int; Received: {name}={value!r}")
    return int(value)


def non_negative_int(value, name: str, *, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if not _is_int(value) or value < 0:
        rule = "a non-negative int" + (" or None" if allow_none else "")
        raise ValueError(f"Invalid {name}. Expected {rule}; Received: {name}={value!r}")
    return int(value)


def positive_number(value, name: str, *, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value > 0:
        unit = " of seconds" if name.endswith("_s") else ""
        raise ValueError(
            f"Invalid {name}. Expected a positive number{unit}; Received: {name}={value!r}"
        )
    return float(value)


def fraction(value, name: str) -> float:
    """A number in [0, 1), such as a moving-average momentum."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value < 1:
        raise ValueError(f"Invalid {name}. Expected 0 <= {name} < 1; Received: {name}={value!r}")
    return float(value)


def share(value, name: str) -> float:
    """A number in [0, 1], such as the share of images a precision may change."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value <= 1:
        raise ValueError(f"Invalid {name}. Expected 0 <= {name} <= 1; Received: {name}={value!r}")
    return float(value)


def non_negative_number(value, name: str) -> float:
    """A finite number >= 0, such as a bound (no bound is None, not infinity)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value < math.inf:
        raise ValueError(
            f"Invalid {name}. Expected a finite number >= 0; Received: {name}={value!r}"
        )
    return float(value)


def data_format(value, name: str = "data_format") -> str:
    return choice(value, DATA_FORMATS, name)


def channel_axis(data_format: str) -> int:
    """The channel axis of a batch in `data_format`, counted from the end for channels_last."""
    return -1 if data_format == "channels_last" else 1


def dtype_policy(name, *, origin: str = "dtype_policy") -> str:
    """A policy name of DTYPE_POLICIES (or the float64 reference policy)."""
    if name == REFERENCE_POLICY:
        return name
    where = "" if origin == "dtype_policy" else f" ({origin})"
    return choice(name, DTYPE_POLICIES, "dtype_policy", what=f"Unsupported dtype policy{where}")


def _layout(input_format: str, batch: bool) -> str:
    dims = (
        "(height, width, channels)"
        if input_format == "channels_last"
        else ("(channels, height, width)")
    )
    return "(batch, " + dims[1:] if batch else dims


def image_shape(input_shape, input_format: str, min_size: int = 1) -> tuple:
    """A per-example image shape, (H, W, C) or (C, H, W) by `input_format`; sizes may be None,
    channels may not; known sizes at least `min_size`."""

    def is_size(d):
        return d is None or (_is_int(d) and d > 0)

    layout = _layout(input_format, batch=False)
    ok = (
        isinstance(input_shape, (tuple, list))
        and len(input_shape) == 3
        and all(is_size(d) for d in input_shape)
    )
    if not ok:
        raise ValueError(
            f"Invalid input_shape. Expected 3 positive ints {layout} for "
            f"input_format={input_format!r}; Received: input_shape={input_shape!r}"
        )
    shape = tuple(None if d is None else int(d) for d in input_shape)
    if shape[channel_axis(input_format)] is None:
        raise ValueError(
            f"Invalid input_shape. The channel count must be known, {layout}; "
            f"Received: input_shape={input_shape!r}"
        )
    spatial = shape[:2] if input_format == "channels_last" else shape[1:]
    if any(s is not None and s < min_size for s in spatial):
        raise ValueError(
            f"Invalid input_shape. Images must be at least {min_size}x{min_size} pixels "
            f"here; Received: input_shape={input_shape!r}"
        )
    return shape


def in_channels(input_shape, data_format: str, who: str) -> int:
    """The known channel count of a 4D input shape, for a layer's build."""
    shape = tuple(input_shape)
    if len(shape) != 4:
        raise ValueError(
            f"{who} expects a 4D input (batch, height, width, channels) or (batch, channels, "
            f"height, width); Received: input_shape={shape}"
        )
    channels = shape[channel_axis(data_format)]
    if channels is None:
        raise ValueError(
            f"{who} needs a known channel count on axis {channel_axis(data_format)} "
            f"(data_format={data_format!r}); Received: input_shape={shape}"
        )
    return int(channels)


def _format_shape(shape) -> str:
    dims = ["None" if d is None else str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _dtype_name(dtype) -> str:
    name = getattr(dtype, "name", None)
    return name if isinstance(name, str) else str(dtype)


def images(x, *, expected: tuple, input_format: str, who: str) -> None:
    """ValueError unless `x` is a float batch of images of per-example shape `expected`."""
    shape = tuple(x.shape)
    dtype = _dtype_name(x.dtype)
    want = (
        f"{_layout(input_format, batch=True)} = {_format_shape((None,) + tuple(expected))} "
        f"[input_format={input_format!r}]"
    )
    received = f"input with shape {_format_shape(shape)} and dtype {dtype}"
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
    for got, size in zip(shape[1:], expected):
        if got is not None and size is not None and got != size:
            raise ValueError(f"Invalid input size for {who}: expected {want}; Received: {received}")
    if dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"Invalid input dtype for {who}: expected a floating-point dtype "
            f"({', '.join(FLOAT_DTYPES)}); Received: {received}. Cast (and scale) images "
            f"first, e.g. tf.cast(images, tf.float32) / 255."
        )


def is_array(value) -> bool:
    """A tensor or an array (what has a shape and a dtype), not a Python list or a scalar."""
    return hasattr(value, "shape") and hasattr(value, "dtype")


def batch_array(value, name: str, who: str, expected: str) -> None:
    """ValueError unless `value` is a tensor or an array: a nested list would be traced value by
    value by tf.function and taken for several inputs by Keras."""
    if not is_array(value):
        raise ValueError(
            f"Invalid {name} for {who}. Expected a tf.Tensor or NumPy array {expected}; "
            f"Received: {name} of type {type(value).__name__}. Convert it first, e.g. "
            f"np.asarray({name}, {'np.float32' if name == 'images' else 'np.int32'})"
        )


def labels(value, batch, who: str) -> None:
    """ValueError unless `value` is a batch of class ids for `batch` images: one int per image."""
    want = f"of int32 or int64 class ids, shape ({'batch' if batch is None else batch},)"
    if value is None:
        raise ValueError(
            f"Missing labels for {who}. A training step is step(images, labels), labels a "
            f"tf.Tensor or NumPy array {want}; Received: labels=None"
        )
    batch_array(value, "labels", who, want)
    shape = tuple(value.shape)
    if len(shape) != 1 or (batch is not None and shape[0] is not None and shape[0] != batch):
        raise ValueError(
            f"Invalid labels for {who}. Expected {want}; Received: labels with shape "
            f"{_format_shape(shape)}"
        )
    if _dtype_name(value.dtype) not in ("int32", "int64"):  # what the cross-entropy takes
        raise ValueError(
            f"Invalid labels for {who}. Expected {want}; Received: labels with dtype "
            f"{_dtype_name(value.dtype)}"
        )
