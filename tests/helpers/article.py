"""The seed article's ResNet18, in the article's own style (tests only).

A faithful rewrite of the Keras code in "ResNet18的基本原理及tensorflow2.0实现"
(/work/shared/seed/000_abd8e70bed995984.txt): a `BasicBlock` layer, a `ResNet` model with a
`stem` Sequential and `build_resblock` Sequentials. Two changes only: `keras` comes from
`blocks._compat` (Keras 3, or Keras 2 on old TensorFlow), and a `dtype` reaches every layer so the
network can run in float64. Everything else keeps the article's choices, Keras defaults included
(stem conv "valid", BN momentum 0.99 and epsilon 1e-3, a shortcut conv only when stride != 1).
"""

import numpy as np
import tensorflow as tf

from blocks._compat import keras

layers = keras.layers
Sequential = keras.Sequential


class BasicBlock(layers.Layer):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + downsample(x)); convs 3x3 "same" with bias.

    downsample: a 1x1 conv with `stride` (bias, no BN) when stride != 1, else the identity.
    """

    def __init__(self, filter_num, stride=1, dtype="float32"):
        super().__init__(dtype=dtype)
        self.add_dtype = dtype
        # 第一小块 (first conv)
        self.conv1 = layers.Conv2D(filter_num, (3, 3), strides=stride, padding="same", dtype=dtype)
        self.bn1 = layers.BatchNormalization(dtype=dtype)
        self.relu = layers.Activation("relu", dtype=dtype)
        # 第二小块 (second conv)
        self.conv2 = layers.Conv2D(filter_num, (3, 3), strides=1, padding="same", dtype=dtype)
        self.bn2 = layers.BatchNormalization(dtype=dtype)
        if stride != 1:
            self.downsample = Sequential()
            self.downsample.add(layers.Conv2D(filter_num, (1, 1), strides=stride, dtype=dtype))
        else:
            self.downsample = lambda x: x

    def call(self, inputs, training=None):
        identity = self.downsample(inputs)
        out = self.conv1(inputs)
        out = self.bn1(out, training=training)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out, training=training)
        out = layers.add([out, identity], dtype=self.add_dtype)
        out = tf.nn.relu(out)
        return out


class ResNet(keras.Model):
    """stem (3x3/1 "valid" conv, BN, ReLU, 2x2/1 "same" max pool), layer1..layer4 of BasicBlocks
    (64, 128, 256, 512 filters; first strides 1, 2, 2, 2), global average pool, Dense logits."""

    def build_resblock(self, filter_num, blocks, stride=1):
        res_blocks = Sequential()
        res_blocks.add(BasicBlock(filter_num, stride, dtype=self.layer_dtype))
        for _ in range(1, blocks):
            res_blocks.add(BasicBlock(filter_num, stride=1, dtype=self.layer_dtype))
        return res_blocks

    def __init__(self, layer_dims, num_classes=10, dtype="float32"):
        super().__init__(dtype=dtype)
        self.layer_dtype = dtype
        self.stem = Sequential(
            [
                layers.Conv2D(64, (3, 3), strides=(1, 1), dtype=dtype),
                layers.BatchNormalization(dtype=dtype),
                layers.Activation("relu", dtype=dtype),
                layers.MaxPool2D(pool_size=(2, 2), strides=(1, 1), padding="same", dtype=dtype),
            ]
        )
        self.layer1 = self.build_resblock(64, layer_dims[0])
        self.layer2 = self.build_resblock(128, layer_dims[1], stride=2)
        self.layer3 = self.build_resblock(256, layer_dims[2], stride=2)
        self.layer4 = self.build_resblock(512, layer_dims[3], stride=2)
        self.avgpool = layers.GlobalAveragePooling2D(dtype=dtype)
        self.fc = layers.Dense(num_classes, dtype=dtype)

    def call(self, inputs, training=None):
        x = self.stem(inputs, training=training)
        x = self.layer1(x, training=training)
        x = self.layer2(x, training=training)
        x = self.layer3(x, training=training)
        x = self.layer4(x, training=training)
        x = self.avgpool(x)
        x = self.fc(x)
        return x


def article_resnet18(num_classes=10, dtype="float32"):
    """The article's `ResNet18()`: ResNet([2, 2, 2, 2]), unbuilt."""
    return ResNet([2, 2, 2, 2], num_classes=num_classes, dtype=dtype)


def built_article_resnet18(input_shape=(32, 32, 3), num_classes=10, dtype="float32"):
    """`article_resnet18`, built by one inference call on a zero batch of `input_shape` (NHWC)."""
    model = article_resnet18(num_classes=num_classes, dtype=dtype)
    model(np.zeros((1, *input_shape), dtype=np.float32), training=False)
    return model


def _conv_targets(conv, name, targets):
    targets[f"{name}.kernel"] = conv.kernel
    targets[f"{name}.bias"] = conv.bias


def _bn_targets(bn, name, targets):
    for attr in ("gamma", "beta", "moving_mean", "moving_variance"):
        targets[f"{name}.{attr}"] = getattr(bn, attr)


def canonical_targets(model):
    """{canonical name: variable} of a built article model, from its structure, not its names.

    stem.layers[0] / [1] are stem.conv / stem.bn; layer{s}.layers[b] is BasicBlock layer{s}.{b},
    whose downsample.layers[0] (when it has a downsample Sequential) is layer{s}.{b}.downsample.conv;
    fc is fc.
    """
    targets = {}
    _conv_targets(model.stem.layers[0], "stem.conv", targets)
    _bn_targets(model.stem.layers[1], "stem.bn", targets)
    for s in range(1, 5):
        for b, block in enumerate(getattr(model, f"layer{s}").layers):
            prefix = f"layer{s}.{b}"
            _conv_targets(block.conv1, f"{prefix}.conv1", targets)
            _bn_targets(block.bn1, f"{prefix}.bn1", targets)
            _conv_targets(block.conv2, f"{prefix}.conv2", targets)
            _bn_targets(block.bn2, f"{prefix}.bn2", targets)
            if isinstance(block.downsample, Sequential):
                _conv_targets(block.downsample.layers[0], f"{prefix}.downsample.conv", targets)
    _conv_targets(model.fc, "fc", targets)
    return targets


def load_canonical(model, params):
    """Assign a canonical-key params dict (seed arch) into a built article model.

    Raises ValueError, before assigning anything, when a model variable has no key, a key has no
    variable, or a shape differs.
    """
    targets = canonical_targets(model)
    missing = sorted(set(targets) - set(params))
    unused = sorted(set(params) - set(targets))
    wrong = sorted(
        f"{k}: {tuple(np.shape(params[k]))} != {tuple(targets[k].shape)}"
        for k in set(targets) & set(params)
        if tuple(np.shape(params[k])) != tuple(targets[k].shape)
    )
    if missing or unused or wrong:
        raise ValueError(
            f"params do not fit the article model: unassigned {missing}, unused {unused}, "
            f"wrong shape {wrong}"
        )
    for key, variable in targets.items():
        variable.assign(tf.cast(params[key], variable.dtype))
