"""Bad input gets a ValueError that names the bad value and what is accepted (tables of cases)."""

import re

import numpy as np
import pytest
import tensorflow as tf

import blocks
from tests.helpers.runs import network

SHAPE = (16, 16, 3)


def _esc(value) -> str:
    return re.escape(repr(value))


# (call building a model, expected message); each builds nothing but the argument check.
BUILD_CASES = [
    (
        dict(arch="resnet"),
        r"Unknown arch\. Expected one of \['imagenet', 'seed'\]; Received: arch='resnet'",
    ),
    *[
        (
            dict(dtype_policy=p),
            r"Expected one of \['float32', 'mixed_bfloat16', 'mixed_float16'\]; "
            rf"Received: dtype_policy={_esc(p)}",
        )
        for p in ["float16", "bfloat16", "mixed_int8", ""]
    ],
    *[
        (dict(input_format=f), rf"Invalid input_format.*Received: input_format={_esc(f)}")
        for f in ["NHWC", "channels-last", None]
    ],
    *[
        (dict(input_shape=shape), message + r".*Received: input_shape=")
        for shape, message in [
            ((32, 32), r"Expected 3 positive ints \(height, width, channels\)"),
            ((32, 32, 0), r"Expected 3 positive ints"),
            ((32.5, 32, 3), r"Expected 3 positive ints"),
            ("32x32x3", r"Expected 3 positive ints"),
            ((2, 2, 3), r"stem needs images of at least 3x3 pixels"),
            ((32, 32, None), r"channel count must be known"),
        ]
    ],
    *[
        (
            dict(num_classes=n),
            rf"Invalid num_classes\. Expected a positive int; Received: num_classes={_esc(n)}",
        )
        for n in [0, -3, 2.5, True]
    ],
    *[
        (
            dict(seed=s),
            rf"Invalid seed\. Expected a non-negative int or None; Received: seed={_esc(s)}",
        )
        for s in [-1, 1.5, "0"]
    ],
    (
        dict(variant="nope"),
        r"Unknown variant\. Expected one of \[.*'subclassed'.*\]; Received: variant='nope'",
    ),
]


@pytest.mark.parametrize("kwargs, message", BUILD_CASES, ids=[str(k) for k, _ in BUILD_CASES])
def test_bad_model_arguments(kwargs, message):
    kwargs = dict(kwargs)
    variant = kwargs.pop("variant", "subclassed")
    with pytest.raises(ValueError, match=message):
        blocks.resnet18(variant, **kwargs)


# (block arguments, expected message), for every variant's block.
BLOCK_CASES = [
    *[
        (
            dict(strides=s),
            rf"Invalid strides\. Expected one of \[1, 2\]; Received: strides={_esc(s)}",
        )
        for s in [0, 3, (2, 2), True]
    ],
    *[
        (
            dict(data_format=f),
            r"Invalid data_format\. Expected one of \['channels_last', 'channels_first'\]; "
            rf"Received: data_format={_esc(f)}",
        )
        for f in ["NCHW", "channels_middle", None]
    ],
    *[
        (
            dict(filters=f),
            rf"Invalid filters\. Expected a positive int; Received: filters={_esc(f)}",
        )
        for f in [0, -1, 3.0]
    ],
    (dict(padding="valid"), r"Expected one of \['same', 'symmetric'\]; Received: padding='valid'"),
    (
        dict(bn_momentum=1.0),
        r"Invalid bn_momentum\. Expected 0 <= bn_momentum < 1; Received: bn_momentum=1\.0",
    ),
    (
        dict(bn_epsilon=0),
        r"Invalid bn_epsilon\. Expected a positive number; Received: bn_epsilon=0",
    ),
]


@pytest.mark.parametrize("kwargs, message", BLOCK_CASES, ids=[str(k) for k, _ in BLOCK_CASES])
def test_bad_block_arguments(variant, kwargs, message):
    kwargs = {"filters": 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        variant.block(kwargs.pop("filters"), **kwargs)


# (images, expected message) for a model of per-example shape SHAPE, in every variant.
IMAGE_CASES = [
    (
        np.zeros(SHAPE, np.float32),
        r"Invalid input rank for resnet18 \(variant '\w+'\): expected a 4D batch of images "
        r"\(batch, height, width, channels\) = \(None, 16, 16, 3\).*Received: input with shape "
        r"\(16, 16, 3\) and dtype float32",
    ),
    (
        np.zeros((2, 16, 16, 4), np.float32),
        r"Invalid input channels for resnet18 .*expected 3 channels on axis 3.*Received: input "
        r"with shape \(2, 16, 16, 4\)",
    ),
    (
        np.zeros((2, 3, 16, 16), np.float32),
        r"expected 3 channels on axis 3.*Received: input with shape \(2, 3, 16, 16\)",
    ),
    (
        np.zeros((2, 8, 8, 3), np.float32),
        r"Invalid input size for resnet18 .*\(None, 16, 16, 3\).*Received: input with shape "
        r"\(2, 8, 8, 3\)",
    ),
    *[
        (
            np.zeros((2, 16, 16, 3), dtype),
            r"Invalid input dtype for resnet18 .*expected a floating-point dtype \(float16, "
            r"bfloat16, float32, float64\); Received: input with shape \(2, 16, 16, 3\) and "
            rf"dtype {np.dtype(dtype).name}",
        )
        for dtype in (np.uint8, np.int32, np.bool_)
    ],
]


@pytest.mark.parametrize(
    "x, message",
    IMAGE_CASES,
    ids=["rank", "channels", "nchw-images", "size", "uint8", "int32", "bool"],
)
def test_bad_images(variant, x, message):
    with pytest.raises(ValueError, match=message):
        network(variant.name, "seed", SHAPE)(x)


def test_bad_images_inside_tf_function(variant):
    model = network(variant.name, "seed", SHAPE)
    f = tf.function(lambda t: model(t, training=False))
    with pytest.raises(ValueError, match="Invalid input channels"):
        f(tf.zeros((1, 16, 16, 1)))


def test_float_dtypes_are_accepted(variant):
    model = network(variant.name, "seed", SHAPE)
    for dtype in (tf.float16, tf.bfloat16, tf.float64):
        y = model(tf.zeros((1, *SHAPE), dtype), training=False)
        assert y.shape == (1, 10) and y.dtype == tf.float32


def test_the_errors_that_keep_tensorflows_words_are_one_kind():
    """Each is caught apart by its callers, or all as one; each keeps its one line and `detail`."""
    from blocks import causes
    from blocks.errors import DetailedError
    from blocks.measure import lab, steps, workers

    for kind in (
        blocks.DeviceError,
        blocks.EngineError,
        steps.Unsupported,
        workers.RequestFailed,
        lab.Unrunnable,
    ):
        e = kind("one line", "all TensorFlow said")
        assert isinstance(e, DetailedError) and isinstance(e, RuntimeError), kind
        assert (str(e), e.detail) == ("one line", "all TensorFlow said"), kind
        assert kind("one line").detail == "", kind
    long = "x" * 1000
    assert str(steps.Unsupported(long)) == causes.shorten(long, steps.Unsupported.LIMIT) != long
