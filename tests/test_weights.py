"""Portable weights: canonical keys, bitwise round trips between every pair of variants,
all-or-nothing imports, and files that are either whole or refused."""

import functools
import os
import zipfile

import numpy as np
import pytest

import blocks
from tests.helpers.data import images, random_weights, shapes_of
from tests.helpers.runs import SHAPES, network
from tests.helpers.tolerances import TOLERANCE, rel_err
from tests.helpers.tree import snapshot

REFERENCE = "subclassed"


def expected_keys(arch_name: str, depth: int = 18) -> set:
    """The canonical key set, written out from the key specification (not from the code)."""
    arch = blocks.ARCHS[arch_name]
    bias = arch.use_bias
    bn = ("gamma", "beta", "moving_mean", "moving_variance")
    keys = {"stem.conv.kernel", "fc.kernel", "fc.bias"} | {f"stem.bn.{p}" for p in bn}
    if bias:
        keys.add("stem.conv.bias")
    in_ch = 64
    for s, (filters, repeats, stride) in enumerate(blocks.STAGES[depth], start=1):
        for b in range(repeats):
            p = f"layer{s}.{b}"
            for conv, norm in (("conv1", "bn1"), ("conv2", "bn2")):
                keys.add(f"{p}.{conv}.kernel")
                keys |= {f"{p}.{norm}.{q}" for q in bn}
                if bias:
                    keys.add(f"{p}.{conv}.bias")
            if (stride if b == 0 else 1) != 1 or in_ch != filters:
                keys.add(f"{p}.downsample.conv.kernel")
                if bias:
                    keys.add(f"{p}.downsample.conv.bias")
                if arch.shortcut_bn:
                    keys |= {f"{p}.downsample.bn.{q}" for q in bn}
            in_ch = filters
    return keys


def _model(variant_name, arch):
    return network(variant_name, arch, SHAPES[arch])


def _random(model, rng):
    return random_weights(shapes_of(blocks.export_weights(model)), rng)


@pytest.fixture()
def model(variant, arch):
    return _model(variant.name, arch.name)


def _unchanged(model, before):
    after = blocks.export_weights(model)
    assert sorted(after) == sorted(before)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)


def test_keys_are_canonical(model, arch):
    got = blocks.export_weights(model)
    assert set(got) == expected_keys(arch.name)
    assert all(v.dtype == np.float32 for v in got.values())


def test_kernels_are_hwio_in_every_layout(model, arch):
    w = blocks.export_weights(model)
    k = arch.stem.kernel_size
    assert w["stem.conv.kernel"].shape == (k, k, 3, 64)
    assert w["layer2.0.conv1.kernel"].shape == (3, 3, 64, 128)
    assert w["layer2.0.downsample.conv.kernel"].shape == (1, 1, 64, 128)
    assert w["fc.kernel"].shape == (512, arch.num_classes)


def test_resnet34_keys():
    m = blocks.resnet34("functional", input_shape=(16, 16, 3))
    assert set(blocks.export_weights(m)) == expected_keys("seed", 34)


@functools.lru_cache(maxsize=None)
def _source(variant_name, arch):
    """A model of `variant_name` holding random weights, its export, and its outputs."""
    rng = np.random.default_rng(7)
    model = _model(variant_name, arch)
    blocks.import_weights(model, _random(model, rng))
    x = images(rng, (2, *SHAPES[arch]))
    return blocks.export_weights(model), x, np.asarray(model(x, training=False))


@pytest.mark.parametrize("target", list(blocks.VARIANTS))
def test_round_trip_into_every_other_variant(variant, target, arch):
    """Export from `variant`, import into `target`: bitwise the same weights, the same outputs."""
    exported, x, y_src = _source(variant.name, arch.name)
    model = _model(target, arch.name)
    blocks.import_weights(model, exported)
    back = blocks.export_weights(model)
    for k in exported:
        assert back[k].tobytes() == exported[k].tobytes(), f"{variant.name}->{target}: {k}"
    err = rel_err(np.asarray(model(x, training=False)), y_src)
    assert err <= TOLERANCE["float32"], f"{variant.name}->{target}: outputs differ by {err:.3g}"


def test_save_and_load_file(model, tmp_path):
    rng = np.random.default_rng(1)
    weights = _random(model, rng)
    blocks.import_weights(model, weights)
    path = tmp_path / "w.npz"
    blocks.save_weights(model, path)
    assert os.listdir(tmp_path) == ["w.npz"], "a temporary file was left behind"
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask, "not the mode a plain open() gives"
    with np.load(path) as z:
        assert set(z.files) == set(weights)
    blocks.import_weights(model, _random(model, rng))
    blocks.load_weights(model, path)
    for k, v in blocks.export_weights(model).items():
        assert v.tobytes() == weights[k].tobytes(), k


@pytest.mark.parametrize("name, head", [("W.NPZ", b"PK"), ("w.SafeTensors", b"")])
def test_the_extension_names_the_format_in_any_case(tmp_path, name, head):
    m = _model(REFERENCE, "seed")
    path = tmp_path / name
    blocks.save_weights(m, path)
    data = path.read_bytes()
    assert data.startswith(b"PK") if head else data[8:9] == b"{"
    assert os.listdir(tmp_path) == [name]
    got = blocks.read_weights(path)
    assert {k: v.tobytes() for k, v in got.items()} == {
        k: v.tobytes() for k, v in blocks.export_weights(m).items()
    }


def test_load_reads_the_content_whatever_the_name(tmp_path):
    """Documented: a file is read by its first bytes, so weights other tools saved as .bin
    in one of the two formats load."""
    m = _model(REFERENCE, "seed")
    blocks.save_weights(m, tmp_path / "w.npz")
    os.rename(tmp_path / "w.npz", tmp_path / "w.bin")
    before = blocks.export_weights(m)
    blocks.import_weights(m, _random(m, np.random.default_rng(3)))
    blocks.load_weights(m, tmp_path / "w.bin")
    _unchanged(m, before)


@pytest.mark.parametrize("name", ["w.h5", "w.pt", "weights", "w.npz.bak", "w.bin"])
def test_save_refuses_other_extensions_and_writes_nothing(tmp_path, name):
    (tmp_path / "w.h5").write_bytes(b"\x89HDF\r\n\x1a\n the user's own file")
    (tmp_path / "keep").mkdir()
    before = snapshot(tmp_path)
    path = tmp_path / name
    with pytest.raises(ValueError) as raised:
        blocks.save_weights(_model(REFERENCE, "seed"), path)
    assert str(raised.value) == (
        "Invalid weights path. Expected a file name ending in '.npz' or '.safetensors' "
        f"(any case); Received: path={str(path)!r}"
    )
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", ["adir.npz", "adir.safetensors"])
def test_save_to_a_directory_names_it_and_leaves_it(tmp_path, name):
    target = tmp_path / name
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    with pytest.raises(IsADirectoryError) as raised:
        blocks.save_weights(_model(REFERENCE, "seed"), target)
    assert str(raised.value) == (
        f"Cannot write weights to {str(target)!r}: it is a directory; expected a file path "
        "ending in '.npz' or '.safetensors'."
    )
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("name", ["w.npz", "w.safetensors"])
def test_save_refuses_non_finite_weights_and_keeps_the_old_file(tmp_path, bad, name):
    m = _model(REFERENCE, "seed")
    path = tmp_path / name
    blocks.save_weights(m, path)
    before = snapshot(tmp_path)
    good = blocks.export_weights(m)
    variables = blocks.canonical_variables(m)
    first, later = list(good)[3], list(good)[-1]  # both spoiled: the first in order is named
    try:
        for key in (later, first):
            value = np.array(good[key])
            value.flat[-1] = bad
            variables[key].assign(value)
        with pytest.raises(ValueError) as raised:
            blocks.save_weights(m, path)
    finally:
        blocks.import_weights(m, good)  # the model is shared by the session's tests
    assert str(raised.value) == (
        f"Weight {first!r} holds NaN or infinite values; nothing was written to {str(path)!r}."
    )
    assert snapshot(tmp_path) == before


@functools.lru_cache(maxsize=None)
def _seeded(variant_name, arch, seed):
    m = blocks.resnet18(variant_name, arch=arch, input_shape=SHAPES[arch], seed=seed)
    return blocks.export_weights(m)


def test_seed_gives_the_same_weights_in_every_variant(variant, arch):
    ref = _seeded(REFERENCE, arch.name, 3)
    w = _seeded(variant.name, arch.name, 3)
    for k in ref:
        assert w[k].tobytes() == ref[k].tobytes(), f"{variant.name}: {k}"
    other = _seeded(REFERENCE, arch.name, 4)
    assert not np.array_equal(other["layer1.0.conv1.kernel"], ref["layer1.0.conv1.kernel"])
    assert np.all(ref["stem.bn.gamma"] == 1) and np.all(ref["fc.bias"] == 0)


# --- bad weights: a clear message, and the model exactly as it was ---------------------------


def _bad(model, mutate):
    w = blocks.export_weights(model)
    mutate(w)
    return w


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda w: w.pop("fc.bias"), r"missing keys: 'fc\.bias'.*Nothing was assigned"),
        (
            lambda w: w.update({"fc.biass": np.zeros(10, np.float32)}),
            r"unexpected keys: 'fc\.biass'",
        ),
        (
            lambda w: w.update({"fc.kernel": np.zeros((512, 11), np.float32)}),
            r"Weight 'fc\.kernel' has the wrong shape: model 'resnet18' expects \(512, 10\); Received: shape \(512, 11\)",
        ),
        (
            lambda w: w.update({"stem.conv.kernel": np.zeros((3, 3, 64, 3), np.float32)}),
            r"Weight 'stem\.conv\.kernel' has the wrong shape.*expects \(3, 3, 3, 64\); Received: shape \(3, 3, 64, 3\)",
        ),
        (
            lambda w: w.update({"stem.bn.gamma": np.ones(64, np.int64)}),
            r"Weight 'stem\.bn\.gamma' must be a floating-point array; Received: dtype int64",
        ),
        (
            lambda w: w["layer4.1.bn2.moving_variance"].__setitem__(0, np.nan),
            r"Weight 'layer4\.1\.bn2\.moving_variance' holds NaN",
        ),
    ],
    ids=["missing", "extra", "misshaped", "transposed-kernel", "int", "nan"],
)
def test_bad_weights_dict_leaves_model_unchanged(variant, mutate, message):
    model = _model(variant.name, "seed")
    before = blocks.export_weights(model)
    bad = _bad(model, mutate)
    # Every other entry differs from the model, so a partial import would show.
    for k, v in bad.items():
        if v.dtype.kind == "f" and np.all(np.isfinite(v)):
            bad[k] = v + 1.0
    with pytest.raises(ValueError, match=message):
        blocks.import_weights(model, bad)
    _unchanged(model, before)


def test_not_a_mapping():
    model = _model(REFERENCE, "seed")
    with pytest.raises(
        ValueError, match=r"Expected a mapping of keys to arrays.*Received: weights of type list"
    ):
        blocks.import_weights(model, [np.zeros(3)])


def test_failed_assignment_rolls_back(monkeypatch):
    model = _model(REFERENCE, "seed")
    before = blocks.export_weights(model)
    real = blocks.weights.canonical.canonical_variables

    class Exploding:
        def __init__(self, variable):
            self.shape, self.dtype, self._v = variable.shape, variable.dtype, variable

        def numpy(self):
            return self._v.numpy()

        def assign(self, value):
            raise RuntimeError("device lost")

    def patched(m):
        found = dict(real(m))
        found["fc.bias"] = Exploding(found["fc.bias"])  # last key: everything before is assigned
        return found

    monkeypatch.setattr(blocks.weights.canonical, "canonical_variables", patched)
    bad = {k: v + 1.0 for k, v in before.items()}
    with pytest.raises(RuntimeError, match="device lost"):
        blocks.import_weights(model, bad)
    monkeypatch.undo()
    _unchanged(model, before)


def _write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("kind", ["truncated", "text", "npy", "pickled", "empty"])
def test_bad_weights_file_leaves_model_unchanged(tmp_path, kind):
    model = _model(REFERENCE, "seed")
    before = blocks.export_weights(model)
    good = tmp_path / "good.npz"
    blocks.save_weights(model, good)
    bad = tmp_path / "bad.npz"
    if kind == "truncated":
        data = good.read_bytes()
        _write_bytes(bad, data[: len(data) // 2])
        message = r"Invalid weights file .*bad\.npz.*truncated"
    elif kind == "text":
        bad.write_text("stem.conv.kernel = [1, 2, 3]\n")
        message = r"Invalid weights file .*bad\.npz.: a text file, not a weights file \(it starts with 'stem\.conv\.kernel = \[1, 2'\); expected an \.npz or \.safetensors file"
    elif kind == "npy":
        np.save(bad.with_suffix(".npy"), np.zeros(3))
        bad = bad.with_suffix(".npy")
        message = r"holds a single \.npy array; expected an \.npz or \.safetensors file"
    elif kind == "pickled":
        np.savez(bad, **{"fc.bias": np.array([{"a": 1}], dtype=object)})
        message = r"Invalid weights file .*bad\.npz.*pickled"
    else:
        _write_bytes(bad, b"")
        message = r"Invalid weights file .*bad\.npz.: it is empty"
    with pytest.raises(ValueError, match=message) as raised:
        blocks.load_weights(model, bad)
    if kind != "pickled":
        assert "pickle" not in str(raised.value), "a hint about pickles misleads here"
    _unchanged(model, before)


def test_save_into_a_missing_directory_names_the_given_path(tmp_path):
    path = tmp_path / "nodir" / "w.npz"
    with pytest.raises(FileNotFoundError) as raised:
        blocks.save_weights(_model(REFERENCE, "seed"), path)
    assert str(raised.value) == (
        f"Cannot write weights to {str(path)!r}: the directory {str(path.parent)!r} does not exist."
    )
    assert os.listdir(tmp_path) == []


def test_missing_file(tmp_path):
    model = _model(REFERENCE, "seed")
    with pytest.raises(FileNotFoundError, match=r"No weights file at .*nothing\.npz"):
        blocks.load_weights(model, tmp_path / "nothing.npz")


def test_npz_with_wrong_keys_names_them(tmp_path):
    model = _model(REFERENCE, "seed")
    before = blocks.export_weights(model)
    w = dict(before)
    w["layer1.0.conv3.kernel"] = w.pop("layer1.0.conv2.kernel")
    path = tmp_path / "renamed.npz"
    np.savez(path, **w)
    with pytest.raises(
        ValueError,
        match=r"missing keys: 'layer1\.0\.conv2\.kernel'; unexpected keys: 'layer1\.0\.conv3\.kernel'",
    ):
        blocks.load_weights(model, path)
    _unchanged(model, before)


def test_truncated_zip_member_is_refused(tmp_path):
    """A zip whose directory is intact but whose member data is cut short."""
    model = _model(REFERENCE, "seed")
    good = tmp_path / "good.npz"
    blocks.save_weights(model, good)
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(
                info, data[: len(data) // 2] if info.filename == "fc.kernel.npy" else data
            )
    before = blocks.export_weights(model)
    with pytest.raises(ValueError, match=r"Invalid weights file .*bad\.npz"):
        blocks.load_weights(model, bad)
    _unchanged(model, before)
