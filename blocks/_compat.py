"""Every difference between the supported TensorFlow/Keras versions, in one place.

TF 2.13-2.15 bring Keras 2; TF 2.16-2.21 bring Keras 3, unless `TF_USE_LEGACY_KERAS=1` asks for
`tf_keras` (Keras 2) instead. The rest of the package imports `keras` from here and never asks
which one it got.
"""

from __future__ import annotations

import os
import re

import tensorflow as tf


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


TF_VERSION: str = tf.__version__
TF_VERSION_TUPLE = version_tuple(TF_VERSION)


def _legacy_keras_requested() -> bool:
    # TF <= 2.15 ships Keras 2 as `keras` already; the flag only matters from 2.16 on.
    flag = os.environ.get("TF_USE_LEGACY_KERAS", "").strip().lower() in ("1", "true", "yes")
    return flag and TF_VERSION_TUPLE >= (2, 16)


if _legacy_keras_requested():
    import tf_keras as keras  # noqa: F401  (re-exported)
else:
    import keras  # noqa: F401  (re-exported)

IS_KERAS3: bool = hasattr(keras, "ops")

# A step inside one tf.function(jit_compile=True) run by strategy.run: TF 2.14 and later refuse
# it at once ("Trying to access resource ... located in device ... from device ..."); TF 2.13
# waits forever in the first call (what was seen: docs/known-issues.md). So it is refused before
# it starts where it would hang.
XLA_STEP_UNDER_STRATEGY_DEADLOCKS: bool = TF_VERSION_TUPLE < (2, 14)
KERAS_VERSION: str = keras.__version__

register_serializable = keras.saving.register_keras_serializable


def policy(name: str):
    """A Keras dtype policy object for `name`, valid as a layer's `dtype=` on Keras 2 and 3."""
    return keras.mixed_precision.Policy(name)


def global_policy_name() -> str:
    return keras.mixed_precision.global_policy().name


def batch_norm(*, axis: int, momentum: float, epsilon: float, dtype, name: str):
    """BatchNormalization over `axis`, with one moving-variance convention everywhere.

    Keras 2 lowers BN to FusedBatchNormV3 where it can, and that op updates the moving variance
    with the unbiased batch variance (times n/(n-1)), while Keras 2's unfused path, Keras 3 and
    every float64 BN use the biased one. Unfused on Keras 2 makes every variant, layout, dtype and
    Keras version agree. It also keeps NCHW out of a trap: Grappler's remapper fuses Conv2D +
    FusedBatchNormV3 + ReLU in NCHW into a CPU kernel far slower than NHWC. What unfused costs,
    and that kernel's slowdown, as measured: docs/known-issues.md.
    """
    kwargs = dict(axis=axis, momentum=momentum, epsilon=epsilon, dtype=dtype, name=name)
    if not IS_KERAS3:
        kwargs["fused"] = False
    return keras.layers.BatchNormalization(**kwargs)


if IS_KERAS3:

    @register_serializable(package="blocks")
    class ChannelsFirstConv2D(keras.layers.Conv2D):
        """Conv2D whose channels_first bias add names its layout.

        Keras 3's TensorFlow backend turns `ops.add(x, bias reshaped to (1, C, 1, 1))` into
        `tf.nn.bias_add(x, bias, "NHWC")` whenever the last axis of `x` (the width, in NCHW) also
        equals C: the bias then lands on the width axis. Seen with Keras 3.15 on TF 2.21.
        """

        def call(self, inputs):
            if not self.use_bias:
                return super().call(inputs)
            outputs = self.convolution_op(inputs, self.kernel)
            outputs = tf.nn.bias_add(outputs, tf.cast(self.bias, outputs.dtype), data_format="NCHW")
            return self.activation(outputs)


def conv2d(**kwargs):
    """`keras.layers.Conv2D(**kwargs)`, or the workaround above where Keras 3 needs it."""
    if IS_KERAS3 and kwargs.get("data_format") == "channels_first":
        return ChannelsFirstConv2D(**kwargs)
    return keras.layers.Conv2D(**kwargs)


if not IS_KERAS3:

    @register_serializable(package="blocks")
    class ChannelsFirstMaxPool2D(keras.layers.MaxPool2D):
        """MaxPool2D that pools channels_first input in NHWC, as Keras 3 always does.

        TF's CPU MaxPoolGrad has no NCHW kernel outside graphs, even with oneDNN (TF 2.15, 2.21),
        so an eager training step of an NCHW model would fail in the stem's pool.
        """

        def call(self, inputs):
            x = tf.transpose(inputs, (0, 2, 3, 1))
            x = tf.nn.max_pool2d(
                x, self.pool_size, self.strides, self.padding.upper(), data_format="NHWC"
            )
            return tf.transpose(x, (0, 3, 1, 2))


def max_pool2d(**kwargs):
    """`keras.layers.MaxPool2D(**kwargs)`, pooling in NHWC for channels_first on Keras 2."""
    if not IS_KERAS3 and kwargs.get("data_format") == "channels_first":
        return ChannelsFirstMaxPool2D(**kwargs)
    return keras.layers.MaxPool2D(**kwargs)


def sgd_momentum(learning_rate: float, momentum: float, *, loss_scaling: bool):
    """Keras SGD with momentum, wrapped for dynamic loss scaling (float16) when asked."""
    optimizer = keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)
    if loss_scaling:
        optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def build_optimizer(optimizer, variables) -> None:
    """Create the optimizer's slots before tracing, so no variable is created inside a graph."""
    if hasattr(optimizer, "build"):
        optimizer.build(variables)


def scale_loss(optimizer, loss):
    """Loss times the loss scale: Keras 3 `scale_loss`, Keras 2 `get_scaled_loss`."""
    if hasattr(optimizer, "get_scaled_loss"):
        return optimizer.get_scaled_loss(loss)
    if hasattr(optimizer, "scale_loss"):
        return optimizer.scale_loss(loss)
    return loss


def unscale_gradients(optimizer, grads):
    """Keras 2's LossScaleOptimizer wants unscaled gradients; Keras 3's unscales them itself."""
    if hasattr(optimizer, "get_unscaled_gradients"):
        return optimizer.get_unscaled_gradients(grads)
    return grads


def built_input_shape(layer):
    """The input shape a layer was built with (Keras 3 and Keras 2 record it differently)."""
    shapes = getattr(layer, "_build_shapes_dict", None)
    if shapes:
        return tuple(next(iter(shapes.values())))
    shape = getattr(layer, "_build_input_shape", None)
    if shape is not None:
        return tuple(tf.TensorShape(shape).as_list())
    raise ValueError(f"Layer {layer.name!r} has not been built; build the model first.")


def build_layer(layer, input_shape) -> None:
    """`layer.build(input_shape)` from a parent's build, recording the shape as Keras does when it
    builds a layer on its first call (Keras 2 only records it there)."""
    layer.build(input_shape)
    if not IS_KERAS3 and getattr(layer, "_build_input_shape", None) is None:
        layer._build_input_shape = tf.TensorShape(input_shape)


def tf_variable(variable):
    """The tf.Variable behind a Keras variable: Keras 3 wraps one (`.value`); Keras 2's variable is
    one (there `.value` is a method that reads it)."""
    return variable.value if IS_KERAS3 else variable


def write_saved_model(model, fn, input_signature, directory: str) -> None:
    """Write `model`'s variables and `fn` (its inference function) as a SavedModel whose
    "serve" signature (also the default) takes `input_signature`: Keras's ExportArchive, which
    Keras 2.13+ and Keras 3 both have (Keras 3's `model.export` is a shortcut for it)."""
    import contextlib
    import io

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serve", fn=fn, input_signature=input_signature)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the signature it wrote
        archive.write_out(directory)
