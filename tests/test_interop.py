"""Weights from and to the ecosystem: torchvision/timm state-dict names (NumPy arrays, safetensors
files, PyTorch tensors), keras-hub's ResNetBackbone, and the imagenet arch computing exactly what
PyTorch computes with the same weights."""

import importlib.util
import warnings

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import blocks
from blocks.weights import HeadNotLoadedWarning
from tests.helpers import numpy_resnet
from tests.helpers.data import images, random_weights
from tests.helpers.runs import network, run

SHAPE = (64, 64, 3)
BN = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}


def torchvision_keys() -> set:
    """torchvision resnet18().state_dict() keys, written out from its module tree."""
    keys = set()

    def bn(prefix):
        keys.update(f"{prefix}.{p}" for p in (*BN, "num_batches_tracked"))

    keys.add("conv1.weight")
    bn("bn1")
    for s in range(1, 5):
        for b in range(2):
            p = f"layer{s}.{b}"
            keys.update({f"{p}.conv1.weight", f"{p}.conv2.weight"})
            bn(f"{p}.bn1")
            bn(f"{p}.bn2")
            if b == 0 and s > 1:
                keys.add(f"{p}.downsample.0.weight")
                bn(f"{p}.downsample.1")
    return keys | {"fc.weight", "fc.bias"}


def to_torch_names(canonical: dict) -> dict:
    """Canonical arrays renamed and transposed the torchvision way, key by key (the test's own
    mapping, not the package's)."""
    out = {}
    for key, value in canonical.items():
        layer, param = key.rsplit(".", 1)
        layer = {"stem.conv": "conv1", "stem.bn": "bn1"}.get(layer, layer)
        layer = layer.replace("downsample.conv", "downsample.0").replace(
            "downsample.bn", "downsample.1"
        )
        if param == "kernel" and value.ndim == 4:
            out[f"{layer}.weight"] = value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        elif param == "kernel":
            out[f"{layer}.weight"] = value.T  # (in, out) -> (out, in)
        elif param in BN.values():
            out[f"{layer}.{next(k for k, v in BN.items() if v == param)}"] = value
        else:
            out[f"{layer}.{param}"] = value
        if param == "moving_variance":
            out[f"{layer}.num_batches_tracked"] = np.array(7, np.int64)
    return out


def _problem(seed=0, classes=1000):
    rng = np.random.default_rng(seed)
    canonical = random_weights(numpy_resnet.param_shapes("imagenet", 18, 3, classes), rng)
    return canonical, images(rng, (2, *SHAPE))


def test_export_names_are_torchvisions():
    model = network("subclassed", "imagenet", SHAPE)
    exported = blocks.export_weights(model, naming="torchvision")
    assert set(exported) == torchvision_keys() - {
        k for k in torchvision_keys() if k.endswith("num_batches_tracked")
    }
    assert exported["conv1.weight"].shape == (64, 3, 7, 7)
    assert exported["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert exported["fc.weight"].shape == (1000, 512)


def test_torchvision_named_arrays_compute_the_numpy_network(variant, errors):
    canonical, x = _problem()
    expected, _ = numpy_resnet.resnet_forward(
        {k: v.astype(np.float64) for k, v in canonical.items()}, x, "imagenet"
    )
    model = network(variant.name, "imagenet", SHAPE)
    blocks.import_weights(model, to_torch_names(canonical))
    errors.close(
        run(model, x, False), expected, "float32", f"{variant.name} from torchvision names"
    )


def test_safetensors_round_trip(tmp_path):
    model = network("subclassed", "imagenet", SHAPE)
    canonical, _ = _problem(1)
    blocks.import_weights(model, canonical)
    path = tmp_path / "resnet18.safetensors"
    blocks.save_weights(model, path, naming="torchvision")
    on_disk = load_file(str(path))
    assert set(on_disk) == set(blocks.export_weights(model, naming="torchvision"))
    np.testing.assert_array_equal(
        on_disk["conv1.weight"], canonical["stem.conv.kernel"].transpose(3, 2, 0, 1)
    )
    blocks.import_weights(model, _problem(2)[0])
    blocks.load_weights(model, path)
    for key, value in blocks.export_weights(model).items():
        assert value.tobytes() == canonical[key].tobytes(), key


# --- bad weights: named keys and causes, the model unchanged -----------------------------------


def _bottleneck(canonical):
    torch_names = to_torch_names(canonical)
    torch_names["layer1.0.conv3.weight"] = np.zeros((256, 64, 1, 1), np.float32)
    torch_names["layer1.0.bn3.weight"] = np.ones(256, np.float32)
    return torch_names


BAD = [
    (
        _bottleneck,
        r"These torchvision weights are of a bottleneck ResNet \(ResNet50 or deeper: they hold 'layer1\.0\.bn3\.weight' and 1 more third-convolution keys\); this model is a BasicBlock ResNet \(18 or 34\)\. Nothing was assigned\.",
    ),
    (
        lambda c: random_weights(
            numpy_resnet.param_shapes("seed", 18, 3, 1000), np.random.default_rng(3)
        ),
        r"Weights do not fit model 'resnet18': missing keys: .*'layer2\.0\.downsample\.bn\.beta'.*; unexpected keys: .*'layer1\.0\.conv1\.bias'.*\. They have conv biases and no shortcut BN: the seed arch's weights, and this model is arch 'imagenet'\..*Nothing was assigned\.",
    ),
    (
        lambda c: {k: v for k, v in to_torch_names(c).items() if k != "layer3.1.bn2.running_var"},
        r"\(read as torchvision names, shown canonical\): missing keys: 'layer3\.1\.bn2\.moving_variance'\..*Nothing was assigned\.",
    ),
    (
        lambda c: {
            **to_torch_names(c),
            "layer3.1.conv2.weight": np.zeros((256, 256, 1, 1), np.float32),
        },
        r"Weight 'layer3\.1\.conv2\.kernel' has the wrong shape: model 'resnet18' expects \(3, 3, 256, 256\); Received: shape \(1, 1, 256, 256\)\. Nothing was assigned\.",
    ),
    (
        lambda c: {
            "encoder.layer.0.attention.weight": np.zeros((4, 4), np.float32),
            "pooler.bias": np.zeros(4, np.float32),
        },
        r"Unrecognised weights: their keys are not ResNet weights in a known naming \(canonical, torchvision, keras_hub\); Received keys such as 'encoder\.layer\.0\.attention\.weight', 'pooler\.bias'\. Nothing was assigned\.",
    ),
]


@pytest.mark.parametrize(
    "make, message", BAD, ids=["resnet50", "seed-into-imagenet", "missing", "misshaped", "foreign"]
)
def test_bad_weights_are_refused_and_the_model_is_unchanged(tmp_path, make, message):
    model = network("subclassed", "imagenet", SHAPE)
    before = blocks.export_weights(model)
    bad = make(_problem(4)[0])
    path = tmp_path / "bad.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in bad.items()}, str(path))
    with pytest.raises(ValueError, match=message):
        blocks.load_weights(model, path)
    for key, value in blocks.export_weights(model).items():
        assert value.tobytes() == before[key].tobytes(), f"{key} changed"


def test_a_backbone_loads_into_a_model_with_its_own_head():
    """ImageNet weights (1000 classes) into a 10-class model: all but the head, and said so."""
    model = blocks.resnet18(
        "functional", arch="imagenet", input_shape=SHAPE, num_classes=10, seed=0
    )
    head = blocks.export_weights(model)["fc.kernel"].copy()
    canonical, _ = _problem(5)
    with pytest.warns(
        HeadNotLoadedWarning, match=r"the weights' head has 1000 classes, the model's 10"
    ):
        blocks.import_weights(model, to_torch_names(canonical))
    after = blocks.export_weights(model)
    assert after["stem.conv.kernel"].tobytes() == canonical["stem.conv.kernel"].tobytes()
    assert after["fc.kernel"].tobytes() == head.tobytes()
    no_head = {k: v for k, v in to_torch_names(canonical).items() if not k.startswith("fc.")}
    with pytest.warns(HeadNotLoadedWarning, match=r"the weights have no classifier head"):
        blocks.import_weights(model, no_head)


# --- against PyTorch, where it is installed ------------------------------------------------------


@pytest.fixture(scope="module")
def torch_resnet():
    if importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch is not installed: pip install '.[interop]' runs these")
    from tests.helpers import torch_resnet

    return torch_resnet


def _torch_logits(torch_model, x):
    import torch

    with torch.no_grad():
        return torch_model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()


def test_every_variant_computes_what_pytorch_computes(torch_resnet, variant, errors):
    torch_model = torch_resnet.randomised(seed=1)
    x = images(np.random.default_rng(6), (2, *SHAPE))
    model = network(variant.name, "imagenet", SHAPE)
    blocks.import_weights(model, torch_model.state_dict())  # tensors, torchvision names
    err = errors.close(
        run(model, x, False),
        _torch_logits(torch_model, x),
        "float32",
        f"{variant.name} vs PyTorch",
        f"{variant.name} vs PyTorch",
    )
    assert err <= 1e-5


def test_round_trip_through_safetensors_and_pytorch(torch_resnet, tmp_path, errors):
    from safetensors.torch import load_file as torch_load_file

    model = network("subclassed", "imagenet", SHAPE)
    canonical, x = _problem(7)
    blocks.import_weights(model, canonical)
    path = tmp_path / "ours.safetensors"
    blocks.save_weights(model, path, naming="torchvision")
    torch_model = torch_resnet.ResNet18().eval()
    missing, unexpected = torch_model.load_state_dict(torch_load_file(str(path)), strict=False)
    assert unexpected == [] and all(k.endswith("num_batches_tracked") for k in missing)
    errors.close(
        _torch_logits(torch_model, x),
        run(model, x, False),
        "float32",
        "PyTorch from our file",
        "vs PyTorch",
    )
    blocks.import_weights(model, _problem(8)[0])
    blocks.import_weights(model, torch_model.state_dict())
    for key, value in blocks.export_weights(model).items():
        assert value.tobytes() == canonical[key].tobytes(), key


# --- against keras-hub, where it is installed ----------------------------------------------------


@pytest.fixture(scope="module")
def keras_hub():
    if importlib.util.find_spec("keras_hub") is None:
        pytest.skip("keras-hub is not installed (it brings the full `tensorflow`: tox -e interop)")
    import keras_hub

    return keras_hub


def test_a_keras_hub_backbone_computes_the_same_features(keras_hub, variant, errors):
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=[2, 2, 2, 2],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
        use_pre_activation=False,
        image_shape=SHAPE,
    )
    rng = np.random.default_rng(9)
    for layer in backbone.layers:
        for v in layer.weights:
            name = v.path.split("/")[-1]
            if name == "moving_variance":
                v.assign(rng.uniform(0.05, 2.0, v.shape))
            elif name in ("moving_mean", "beta"):
                v.assign(rng.normal(0, 0.2, v.shape))
            elif name == "gamma":
                v.assign(rng.uniform(0.5, 1.5, v.shape))
    model = network(variant.name, "imagenet", SHAPE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HeadNotLoadedWarning)
        blocks.import_weights(model, backbone)
    x = images(rng, (2, *SHAPE))
    fc = blocks.export_weights(model)
    features = np.asarray(backbone(x)).mean(axis=(1, 2))
    expected = features @ fc["fc.kernel"] + fc["fc.bias"]
    errors.close(
        run(model, x, False),
        expected,
        "float32",
        f"{variant.name} vs keras-hub",
        f"{variant.name} vs keras-hub",
    )
