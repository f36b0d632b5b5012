"""Bad input gets a ValueError that names the bad value and what is accepted."""

import functools
import re

import numpy as np
import pytest
import tensorflow as tf

import blocks

from support import skip_unless_runnable


@functools.lru_cache(maxsize=None)
def _model(variant_name):
    return blocks.resnet18(variant_name, input_shape=(16, 16, 3), seed=0)


@pytest.fixture()
def model(variant):
    skip_unless_runnable(variant)
    return _model(variant.name)


def test_unknown_arch():
    with pytest.raises(
        ValueError,
        match=r"Unknown arch\. Expected one of \['imagenet', 'seed'\]; Received: arch='resnet'",
    ):
        blocks.resnet18(arch="resnet")


@pytest.mark.parametrize("policy", ["float16", "bfloat16", "mixed_int8", ""])
def test_unknown_dtype_policy(policy):
    with pytest.raises(
        ValueError,
        match=r"Expected one of \['float32', 'mixed_bfloat16', 'mixed_float16'\]; "
        rf"Received: dtype_policy='{policy}'",
    ):
        blocks.resnet18(dtype_policy=policy)


@pytest.mark.parametrize("fmt", ["NHWC", "channels-last", None])
def test_invalid_input_format(fmt):
    with pytest.raises(
        ValueError, match=rf"Invalid input_format.*Received: input_format={re.escape(repr(fmt))}"
    ):
        blocks.resnet18(input_format=fmt)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((32, 32), r"Expected 3 positive ints \(height, width, channels\)"),
        ((32, 32, 0), r"Expected 3 positive ints"),
        ((32.5, 32, 3), r"Expected 3 positive ints"),
        ("32x32x3", r"Expected 3 positive ints"),
        ((2, 2, 3), r"stem needs images of at least 3x3 pixels"),
        ((32, 32, None), r"channel count must be known"),
    ],
)
def test_invalid_input_shape(shape, message):
    with pytest.raises(ValueError, match=message + r".*Received: input_shape="):
        blocks.resnet18(input_shape=shape)


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_invalid_num_classes(n):
    with pytest.raises(
        ValueError,
        match=rf"Invalid num_classes\. Expected a positive int; Received: num_classes={re.escape(repr(n))}",
    ):
        blocks.resnet18(num_classes=n)


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_invalid_seed(seed):
    with pytest.raises(ValueError, match=rf"Invalid seed.*Received: seed={re.escape(repr(seed))}"):
        blocks.resnet18(seed=seed)


@pytest.mark.parametrize("strides", [0, 3, (2, 2), True])
def test_invalid_block_strides(variant, strides):
    with pytest.raises(
        ValueError,
        match=rf"Invalid strides\. Expected one of \[1, 2\]; Received: strides={re.escape(repr(strides))}",
    ):
        variant.block(8, strides=strides)


@pytest.mark.parametrize("data_format", ["NCHW", "channels_middle", None])
def test_invalid_block_data_format(variant, data_format):
    with pytest.raises(
        ValueError,
        match=rf"Invalid data_format\. Expected one of \['channels_last', 'channels_first'\]; Received: data_format={re.escape(repr(data_format))}",
    ):
        variant.block(8, data_format=data_format)


@pytest.mark.parametrize("filters", [0, -1, 3.0])
def test_invalid_block_filters(variant, filters):
    with pytest.raises(
        ValueError,
        match=rf"Invalid filters\. Expected a positive int; Received: filters={re.escape(repr(filters))}",
    ):
        variant.block(filters)


def test_invalid_block_padding(variant):
    with pytest.raises(
        ValueError, match=r"Expected one of \['same', 'symmetric'\]; Received: padding='valid'"
    ):
        variant.block(8, padding="valid")


def test_wrong_input_rank(model):
    x = np.zeros((16, 16, 3), np.float32)
    with pytest.raises(
        ValueError,
        match=r"Invalid input rank for resnet18 \(variant '\w+'\): expected a 4D batch of images \(batch, height, width, channels\) = \(None, 16, 16, 3\).*Received: input with shape \(16, 16, 3\) and dtype float32",
    ):
        model(x)


def test_wrong_channel_count(model):
    x = np.zeros((2, 16, 16, 4), np.float32)
    with pytest.raises(
        ValueError,
        match=r"Invalid input channels for resnet18 .*expected 3 channels on axis 3.*Received: input with shape \(2, 16, 16, 4\)",
    ):
        model(x)


def test_channels_first_images_to_a_channels_last_model(model):
    x = np.zeros((2, 3, 16, 16), np.float32)
    with pytest.raises(
        ValueError,
        match=r"expected 3 channels on axis 3.*Received: input with shape \(2, 3, 16, 16\)",
    ):
        model(x)


def test_wrong_spatial_size(model):
    x = np.zeros((2, 8, 8, 3), np.float32)
    with pytest.raises(
        ValueError,
        match=r"Invalid input size for resnet18 .*\(None, 16, 16, 3\).*Received: input with shape \(2, 8, 8, 3\)",
    ):
        model(x)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.bool_])
def test_wrong_dtype(model, dtype):
    x = np.zeros((2, 16, 16, 3), dtype)
    name = np.dtype(dtype).name
    with pytest.raises(
        ValueError,
        match=rf"Invalid input dtype for resnet18 .*expected a floating-point dtype \(float16, bfloat16, float32, float64\); Received: input with shape \(2, 16, 16, 3\) and dtype {name}",
    ):
        model(x)


def test_wrong_input_inside_tf_function(model):
    f = tf.function(lambda t: model(t, training=False))
    with pytest.raises(ValueError, match="Invalid input channels"):
        f(tf.zeros((1, 16, 16, 1)))


def test_float_dtypes_are_accepted(model):
    for dtype in (tf.float16, tf.bfloat16, tf.float64):
        y = model(tf.zeros((1, 16, 16, 3), dtype), training=False)
        assert y.shape == (1, 10) and y.dtype == tf.float32
