"""A small NumPy float64 ResNet18/34, written from the architectures' definitions.

An independent reference for the tests: no TensorFlow, nothing imported from `blocks`, its own
constants. Layout NHWC; conv kernels HWIO (kh, kw, in, out); dense kernel (in, out). `params` maps
the project's canonical names (`stem.conv.kernel`, `layer2.0.bn1.gamma`, `fc.bias`, ...) to arrays.

The two architectures:

- "seed" (the article "ResNet18的基本原理及tensorflow2.0实现"): stem 3x3/1 "valid" conv with bias,
  BN, ReLU, 2x2/1 max pool with TF "same" padding; block convs 3x3 with TF "same" padding and
  bias; projection shortcut 1x1/s conv with bias and no BN; BN momentum 0.99, epsilon 1e-3.
- "imagenet" (He et al. 2016, torchvision): stem 7x7/2 conv with 3 zeros per side, no bias, BN,
  ReLU, 3x3/2 max pool with 1 per side; block convs 3x3 with 1 zero per side, no bias;
  projection shortcut 1x1/s conv without bias, then BN; BN momentum 0.9 (PyTorch's 0.1),
  epsilon 1e-5.
"""

import numpy as np

# (filters, blocks, stride of the stage's first block) per stage.
STAGES = {
    18: ((64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)),
    34: ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)),
}

# Padding is "valid", "same" (TensorFlow's) or an int: that many zeros (-inf for pools) per side.
ARCHS = {
    "seed": dict(
        stem=(3, 1, "valid"),
        pool=(2, 1, "same"),
        use_bias=True,
        shortcut_bn=False,
        padding="same",
        momentum=0.99,
        epsilon=1e-3,
    ),
    "imagenet": dict(
        stem=(7, 2, 3),
        pool=(3, 2, 1),
        use_bias=False,
        shortcut_bn=True,
        padding="symmetric",
        momentum=0.9,
        epsilon=1e-5,
    ),
}

BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")
MOVING = ("moving_mean", "moving_variance")


def tf_same_pads(size, kernel, stride):
    """TensorFlow's "same" padding along one axis, as (before, after).

    out = ceil(size / stride); total = max((out - 1) * stride + kernel - size, 0);
    before = total // 2; after = total - before (the odd zero goes after).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pads(padding, size, kernel, stride):
    """(before, after) along one axis for padding "valid", "same" or an int n (n per side)."""
    if padding == "valid":
        return 0, 0
    if padding == "same":
        return tf_same_pads(size, kernel, stride)
    return int(padding), int(padding)


def _pads_2d(x, padding, kernel, stride):
    return tuple(pads(padding, size, kernel, stride) for size in x.shape[1:3])


def _windows(xp, kh, kw, stride):
    """(a, b, xp[:, i*stride + a, j*stride + b, :] over all output i, j) per kernel offset."""
    oh = (xp.shape[1] - kh) // stride + 1
    ow = (xp.shape[2] - kw) // stride + 1
    for a in range(kh):
        for b in range(kw):
            rows = slice(a, a + stride * (oh - 1) + 1, stride)
            cols = slice(b, b + stride * (ow - 1) + 1, stride)
            yield a, b, xp[:, rows, cols, :]


def conv2d(x, kernel, bias, stride, pad):
    """out[n, i, j, o] = sum_{a, b, c} xp[n, i*s + a, j*s + b, c] * kernel[a, b, c, o] + bias[o].

    xp is x with explicit zeros, pad = ((top, bottom), (left, right)); then a "valid" conv.
    `bias` may be None.
    """
    xp = np.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
    kh, kw, _, _ = kernel.shape
    out = sum(window @ kernel[a, b] for a, b, window in _windows(xp, kh, kw, stride))
    return out if bias is None else out + bias


def max_pool(x, size, stride, pad):
    """out[n, i, j, c] = max_{a, b < size} xp[n, i*s + a, j*s + b, c], xp padded with -inf."""
    xp = np.pad(x, ((0, 0), pad[0], pad[1], (0, 0)), constant_values=-np.inf)
    return np.max([window for _, _, window in _windows(xp, size, size, stride)], axis=0)


def relu(x):
    return np.maximum(x, 0.0)


def global_average_pool(x):
    """Mean over height and width: (N, H, W, C) -> (N, C)."""
    return x.mean(axis=(1, 2))


def dense(x, kernel, bias):
    return x @ kernel + bias


def batch_norm(x, p, training, momentum, epsilon):
    """y = gamma * (x - mean) / sqrt(var + epsilon) + beta, per channel; returns (y, moving stats).

    Inference: mean, var = p's moving_mean, moving_variance (returned unchanged).
    Training: the batch mean and the biased batch variance over (N, H, W); the moving statistics
    become momentum * old + (1 - momentum) * batch statistic (Keras convention, biased variance).
    """
    if training:
        mean = x.mean(axis=(0, 1, 2))
        var = x.var(axis=(0, 1, 2))
        stats = {
            "moving_mean": momentum * p["moving_mean"] + (1 - momentum) * mean,
            "moving_variance": momentum * p["moving_variance"] + (1 - momentum) * var,
        }
    else:
        mean, var = p["moving_mean"], p["moving_variance"]
        stats = {k: np.array(p[k]) for k in MOVING}
    y = p["gamma"] * (x - mean) / np.sqrt(var + epsilon) + p["beta"]
    return y, stats


def _group(params, prefix):
    """{"gamma": params[prefix + ".gamma"], ...}: the variables of one layer."""
    return {k[len(prefix) + 1 :]: v for k, v in params.items() if k.startswith(prefix + ".")}


def _conv_bn(x, params, conv, bn, stride, padding, *, use_bias, training, momentum, epsilon, stats):
    """conv `conv` (bias if `use_bias`), then BN `bn` unless None; BN's new stats go to `stats`."""
    kernel = params[f"{conv}.kernel"]
    bias = params[f"{conv}.bias"] if use_bias else None
    x = conv2d(x, kernel, bias, stride, _pads_2d(x, padding, kernel.shape[0], stride))
    if bn is None:
        return x
    x, new = batch_norm(x, _group(params, bn), training, momentum, epsilon)
    stats.update({f"{bn}.{k}": v for k, v in new.items()})
    return x


def block_forward(
    x,
    params,
    prefix,
    filters,
    stride,
    *,
    use_bias=True,
    shortcut_bn=False,
    padding="same",
    momentum=0.99,
    epsilon=1e-3,
    training=False,
):
    """One BasicBlock: y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); (y, moving stats).

    conv1 is 3x3 with `stride`, conv2 3x3 stride 1; padding "same" (TF's, asymmetric for even
    sizes at stride 2) or "symmetric" (1 zero per side). shortcut(x) = x when stride == 1 and x
    has `filters` channels, else a 1x1 conv with `stride`, no padding (then BN if `shortcut_bn`).
    Variables are `{prefix}.conv1.kernel`, `{prefix}.bn1.gamma`, `{prefix}.downsample.conv...`.
    """
    if padding not in ("same", "symmetric"):
        raise ValueError(f"padding must be 'same' or 'symmetric', not {padding!r}")
    x = np.asarray(x, dtype=np.float64)
    pad = "same" if padding == "same" else 1
    stats = {}
    bn = dict(use_bias=use_bias, training=training, momentum=momentum, epsilon=epsilon, stats=stats)
    out = relu(_conv_bn(x, params, f"{prefix}.conv1", f"{prefix}.bn1", stride, pad, **bn))
    out = _conv_bn(out, params, f"{prefix}.conv2", f"{prefix}.bn2", 1, pad, **bn)
    if stride == 1 and x.shape[-1] == filters:
        shortcut = x
    else:
        down_bn = f"{prefix}.downsample.bn" if shortcut_bn else None
        shortcut = _conv_bn(x, params, f"{prefix}.downsample.conv", down_bn, stride, "valid", **bn)
    return relu(out + shortcut), stats


def _options(arch, bn_momentum=None, bn_epsilon=None):
    options = dict(ARCHS[arch])
    if bn_momentum is not None:
        options["momentum"] = bn_momentum
    if bn_epsilon is not None:
        options["epsilon"] = bn_epsilon
    return options


def _block_kwargs(options):
    keys = ("use_bias", "shortcut_bn", "padding", "momentum", "epsilon")
    return {k: options[k] for k in keys}


def basic_block(x, params, prefix, filters, stride, arch, training=False, **bn_overrides):
    """`block_forward` with `arch`'s options ("seed" or "imagenet"); bn_momentum/bn_epsilon
    override the arch's BN constants."""
    options = _options(arch, **bn_overrides)
    return block_forward(
        x, params, prefix, filters, stride, training=training, **_block_kwargs(options)
    )


def block_plan(depth):
    """[(name, filters, stride), ...]: blocks `layer{s}.{b}`, stages s from 1, blocks b from 0."""
    return [
        (f"layer{s}.{b}", filters, stride if b == 0 else 1)
        for s, (filters, repeats, stride) in enumerate(STAGES[depth], start=1)
        for b in range(repeats)
    ]


def block_param_shapes(prefix, in_channels, filters, stride, *, use_bias, shortcut_bn):
    """{canonical name: shape} of one BasicBlock's variables."""
    shapes = {}
    convs = [("conv1", "bn1", 3, in_channels), ("conv2", "bn2", 3, filters)]
    if stride != 1 or in_channels != filters:
        convs.append(("downsample.conv", "downsample.bn" if shortcut_bn else None, 1, in_channels))
    for conv, bn, k, cin in convs:
        shapes[f"{prefix}.{conv}.kernel"] = (k, k, cin, filters)
        if use_bias:
            shapes[f"{prefix}.{conv}.bias"] = (filters,)
        if bn is not None:
            shapes.update({f"{prefix}.{bn}.{v}": (filters,) for v in BN_VARIABLES})
    return shapes


def param_shapes(arch, depth=18, in_channels=3, num_classes=10):
    """{canonical name: shape} of a whole ResNet's variables: the weight format, by definition."""
    options = ARCHS[arch]
    k = options["stem"][0]
    shapes = {"stem.conv.kernel": (k, k, in_channels, 64)}
    if options["use_bias"]:
        shapes["stem.conv.bias"] = (64,)
    shapes.update({f"stem.bn.{v}": (64,) for v in BN_VARIABLES})
    channels = 64
    for name, filters, stride in block_plan(depth):
        shapes.update(
            block_param_shapes(
                name,
                channels,
                filters,
                stride,
                use_bias=options["use_bias"],
                shortcut_bn=options["shortcut_bn"],
            )
        )
        channels = filters
    shapes["fc.kernel"] = (channels, num_classes)
    shapes["fc.bias"] = (num_classes,)
    return shapes


def random_params(shapes, rng):
    """Random float64 values for `shapes`, every variable informative (no zeros, no ones).

    kernels ~ N(0, sqrt(2 / fan_in)); gamma ~ U(0.5, 1.5); beta, bias, moving_mean ~ N(0, 0.2);
    moving_variance ~ U(0.05, 2).
    """
    params = {}
    for name, shape in shapes.items():
        kind = name.rsplit(".", 1)[1]
        if kind == "kernel":
            params[name] = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:-1])), shape)
        elif kind == "gamma":
            params[name] = rng.uniform(0.5, 1.5, shape)
        elif kind == "moving_variance":
            params[name] = rng.uniform(0.05, 2.0, shape)
        else:
            params[name] = rng.normal(0.0, 0.2, shape)
    return params


def _few(names, limit=6):
    names = sorted(names)
    return names[:limit] + [f"... {len(names) - limit} more"] if len(names) > limit else names


def resnet_forward(params, x, arch, depth=18, training=False, bn_momentum=None, bn_epsilon=None):
    """Logits of ResNet`depth` ("seed" or "imagenet") and the moving statistics after the call.

    stem conv -> BN -> ReLU -> max pool; the stages' BasicBlocks; global average pool -> dense.
    Returns (logits, {"stem.bn.moving_mean": ..., ...}), the statistics updated when `training`.
    bn_momentum / bn_epsilon override the arch's BN constants. `params` must hold exactly the
    variables `param_shapes` names, with those shapes.
    """
    x = np.asarray(x, dtype=np.float64)
    options = _options(arch, bn_momentum, bn_epsilon)
    expected = param_shapes(arch, depth, x.shape[-1], params["fc.bias"].shape[0])
    got = {k: tuple(np.shape(v)) for k, v in params.items()}
    if got != expected:
        wrong = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
        raise ValueError(
            f"params do not match {arch} ResNet{depth}: missing {_few(set(expected) - set(got))}, "
            f"unexpected {_few(set(got) - set(expected))}, wrong shape {_few(wrong)}"
        )
    stats = {}
    _, stride, padding = options["stem"]
    bn = {k: options[k] for k in ("use_bias", "momentum", "epsilon")}
    x = _conv_bn(
        x, params, "stem.conv", "stem.bn", stride, padding, training=training, stats=stats, **bn
    )
    x = relu(x)
    size, stride, padding = options["pool"]
    x = max_pool(x, size, stride, _pads_2d(x, padding, size, stride))
    for name, filters, stride in block_plan(depth):
        x, new = block_forward(
            x, params, name, filters, stride, training=training, **_block_kwargs(options)
        )
        stats.update(new)
    logits = dense(global_average_pool(x), params["fc.kernel"], params["fc.bias"])
    return logits, stats
