"""What the devices TensorFlow sees can run, asked once and remembered."""

from __future__ import annotations

import functools

import tensorflow as tf

from blocks import _compat


class DeviceError(RuntimeError):
    """The current device lacks a kernel a variant needs."""


def current_device() -> str:
    """The full name of the device an op runs on here (honours an enclosing `tf.device`)."""
    return tf.zeros([1]).device


@functools.lru_cache(maxsize=None)
def _nchw_probe(device: str, dtype: str):
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
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
            tf.errors.NotFoundError) as e:
        return e.message.strip().splitlines()[0]
    return None


def check_nchw_support(compute_dtype: str = "float32", device=None) -> None:
    """Raise DeviceError naming the TF version, device and dtype if NCHW conv cannot run there."""
    device = device or current_device()
    error = _nchw_probe(device, compute_dtype)
    if error is None:
        return
    hint = ""
    if "CPU" in device.upper():
        setting = _compat.onednn_setting()
        cpu = _compat.cpu_model_name()
        if setting == "on":
            hint = (
                f" oneDNN is on (TF_ENABLE_ONEDNN_OPTS=1) but has no channels_first {compute_dtype}"
                f" convolution for this CPU ({cpu})."
            )
        else:
            cause = (
                "TF_ENABLE_ONEDNN_OPTS=0 turns it off" if setting == "off"
                else "TensorFlow leaves it off by default on CPUs without AVX512_VNNI/AVX512_BF16/AMX"
            )
            hint = (
                f" On the CPU, TensorFlow's channels_first convolution comes from oneDNN, and {cause}"
                f" (CPU: {cpu}); set TF_ENABLE_ONEDNN_OPTS=1 before importing TensorFlow to run"
                " this variant."
            )
    raise DeviceError(
        f"Variant 'nchw' needs channels_first (NCHW) Conv2D kernels for "
        f"{compute_dtype}, which TensorFlow {_compat.TF_VERSION} lacks on {device}.{hint} Use a "
        f"channels_last variant instead. TensorFlow said: {error}"
    )
