"""Which kernels TensorFlow has on the current device, for variants that need more than the usual.

Asked once per (device, dtype) with a tiny op and remembered. The answer is a `DeviceError` whose
message is one short line (the variant, the missing capability and the fix); TensorFlow's own
words are kept in `detail`, for `--verbose` and `--json`.
"""

from __future__ import annotations

import functools

import tensorflow as tf

from blocks import _compat, cpu
from blocks.errors import DetailedError


class DeviceError(DetailedError):
    """The current device lacks a kernel a variant needs. `detail`: what TensorFlow said."""


def current_device() -> str:
    """The full name of the device an op runs on here (honours an enclosing `tf.device`)."""
    return tf.zeros([1]).device


@functools.lru_cache(maxsize=None)
def _nchw_conv_error(device: str, dtype: str):
    """None if NCHW Conv2D and its gradients run in `dtype` on `device`, else TF's error text.

    (Pools of channels_first input run in NHWC in every Keras version; see _compat.)
    """
    try:
        with tf.device(device):
            x = tf.ones([1, 2, 4, 4], dtype)
            k = tf.ones([3, 3, 2, 2], dtype)
            with tf.GradientTape() as tape:
                tape.watch([x, k])
                y = tf.nn.conv2d(x, k, strides=1, padding="SAME", data_format="NCHW")
            for g in tape.gradient(y, [x, k]):
                g.numpy()
    except (
        tf.errors.InvalidArgumentError,
        tf.errors.UnimplementedError,
        tf.errors.NotFoundError,
    ) as e:
        return " ".join(e.message.split())
    return None


def check_nchw_support(compute_dtype: str = "float32", device=None) -> None:
    """Raise DeviceError if channels_first Conv2D cannot run in `compute_dtype` here."""
    device = device or current_device()
    error = _nchw_conv_error(device, compute_dtype)
    if error is None:
        return
    short = device.split("device:")[-1]
    if "CPU" not in short.upper():
        fix = "use a channels_last variant"
    elif cpu.onednn_on():
        fix = "oneDNN lacks it on this CPU in this TensorFlow; use a channels_last variant"
    else:
        fix = f"set {cpu.ONEDNN_VAR}=1 before TensorFlow is imported"
    raise DeviceError(
        f"nchw: no channels_first {compute_dtype} Conv2D on {short} in TF {_compat.TF_VERSION}; "
        f"{fix}",
        detail=f"TensorFlow said: {error}",
    )
