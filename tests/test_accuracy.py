"""The accuracy cost of a precision (blocks/measure/accuracy.py): the figures against a hand
computation, the budget's bounds, the images file's refusals, and the logits of real candidates
against the float64 reference (itself checked against the NumPy network)."""

import numpy as np
import pytest

import blocks
from blocks.executions import ENGINES
from blocks.measure import accuracy
from blocks.measure.workload import Config, Workload
from tests.helpers import numpy_resnet

# 3 images x 4 classes, worked by hand:
#   image 0: |z - r| max 1.0 (class 1), max|r| 4 -> 0.25;  argmax z 0, r 0: agree
#   image 1: z == r                               -> 0;     argmax z 2, r 2: agree
#   image 2: |z - r| max 1.5 (class 0), max|r| 2 -> 0.75;  argmax z 0, r 1: differ
# logit_error 0.75 (per image: a global max|r| of 4 would give 0.375), agreement 2/3.
# labels (0, 1, 1): z hits image 0 only (1/3); r hits images 0 and 2 (2/3).
REFERENCE = [[2.0, -4.0, 1.0, 0.5], [0.0, 1.0, 3.0, -1.0], [1.0, 2.0, 0.0, 0.0]]
CANDIDATE = [[2.0, -3.0, 1.0, 0.5], [0.0, 1.0, 3.0, -1.0], [2.5, 2.0, 0.0, 0.0]]
LABELS = [0, 1, 1]


def test_cost_by_hand():
    got = accuracy.cost(np.float32(CANDIDATE), np.float64(REFERENCE), np.int32(LABELS))
    assert got == {
        "images": 3,
        "logit_error": 0.75,
        "top1_agreement": pytest.approx(2 / 3),
        "accuracy": pytest.approx(1 / 3),
        "reference_accuracy": pytest.approx(2 / 3),
    }
    assert all(type(v) in (int, float) for v in got.values())  # JSON-able, not NumPy scalars


def test_cost_without_labels():
    got = accuracy.cost(CANDIDATE, REFERENCE)
    assert got["accuracy"] is None and got["reference_accuracy"] is None
    assert got["logit_error"] == 0.75 and got["top1_agreement"] == pytest.approx(2 / 3)


def test_cost_of_identical_logits_is_zero():
    got = accuracy.cost(REFERENCE, REFERENCE)
    assert got["logit_error"] == 0.0 and got["top1_agreement"] == 1.0


def test_a_zero_reference_row():
    """0/0 is an exact match; anything over a zero reference is infinitely off."""
    zero = np.zeros((1, 4))
    assert accuracy.cost(zero, zero)["logit_error"] == 0.0
    assert accuracy.cost(zero + [[0, 1e-9, 0, 0]], zero)["logit_error"] == float("inf")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_logits(bad):
    z = np.array(CANDIDATE)
    z[1, 3] = bad  # image 1 agreed; a non-finite row disagrees and misses its label
    got = accuracy.cost(z, REFERENCE, LABELS)
    assert got["logit_error"] == float("inf")
    assert got["top1_agreement"] == pytest.approx(1 / 3)
    assert got["accuracy"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "z, r, labels, match",
    [
        (
            np.zeros((3, 4)),
            np.zeros((3, 5)),
            None,
            r"logits.shape=\(3, 4\), reference.shape=\(3, 5\)",
        ),
        (np.zeros(4), np.zeros(4), None, r"logits.shape=\(4,\)"),
        (np.zeros((0, 4)), np.zeros((0, 4)), None, r"images >= 1"),
        (CANDIDATE, REFERENCE, [0, 1], r"Expected 3 integers in \[0, 4\).*shape \(2,\)"),
        (CANDIDATE, REFERENCE, [0.0, 1.0, 1.0], r"dtype float64"),
        (CANDIDATE, REFERENCE, [0, 1, 4], r"Expected 3 integers in \[0, 4\)"),
        (CANDIDATE, REFERENCE, [0, -1, 1], r"Expected 3 integers in \[0, 4\)"),
    ],
)
def test_cost_refuses(z, r, labels, match):
    with pytest.raises(ValueError, match=match) as e:
        accuracy.cost(z, r, labels)
    assert "\n" not in str(e.value)


def _cost(n=256, agree=256, error=0.0):
    return {"images": n, "top1_agreement": agree / n, "logit_error": error}


def test_over_budget_on_disagreement():
    message = accuracy.over_budget(_cost(256, 248), 0.01, None)
    assert message == "top-1 disagreement 3.12% (8 of 256 images) > 1% allowed"
    assert accuracy.over_budget(_cost(256, 248), 0.05, None) is None


def test_disagreement_bound_is_inclusive():
    """1 of 100 is exactly 1%, though 1 - 0.99 is 0.010000000000000009 in floating point."""
    assert accuracy.over_budget(_cost(100, 99), 0.01, None) is None
    assert "(2 of 100 images) > 1% allowed" in accuracy.over_budget(_cost(100, 98), 0.01, None)


def test_over_budget_on_logit_error():
    message = accuracy.over_budget(_cost(error=0.042), 0.01, 0.01)
    assert message == "logit error 4.20e-02 > 1.00e-02 allowed"
    assert accuracy.over_budget(_cost(error=0.042), 0.01, 0.042) is None  # equal is inside
    assert accuracy.over_budget(_cost(error=0.042), 0.01, None) is None  # no bound


def test_a_zero_budget_leaves_an_exact_match_only():
    assert accuracy.over_budget(_cost(error=0.0), 0.0, 0.0) is None
    assert accuracy.over_budget(_cost(error=1e-12), 0.0, 0.0).startswith("logit error 1.00e-12")
    assert accuracy.over_budget(_cost(256, 255), 0.0, 0.0).startswith("top-1 disagreement 0.391%")


def test_non_finite_logits_are_never_inside():
    assert "a non-finite logit" in accuracy.over_budget(_cost(error=float("inf")), 1.0, None)


@pytest.mark.parametrize(
    "top1, logit, name",
    [
        (-0.1, None, "max_top1_disagreement"),
        (1.5, None, "max_top1_disagreement"),
        ("1%", None, "max_top1_disagreement"),
        (0.01, -1.0, "max_logit_error"),
        (0.01, float("nan"), "max_logit_error"),
        (0.01, True, "max_logit_error"),
    ],
)
def test_over_budget_refuses_a_bad_budget(top1, logit, name):
    with pytest.raises(ValueError, match=f"Invalid {name}.*Received: {name}="):
        accuracy.over_budget(_cost(), top1, logit)


SIZE = 8  # load_images checks against the size it is given, any arch


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


def _good(n=5, dtype=np.float32):
    return np.random.default_rng(0).standard_normal((n, SIZE, SIZE, 3)).astype(dtype)


def test_load_images_without_labels(tmp_path):
    x = _good()
    got, labels = accuracy.load_images(_write(tmp_path / "x.npz", images=x), "seed", SIZE)
    assert labels is None and got.dtype == np.float32
    np.testing.assert_array_equal(got, x)


def test_load_images_with_labels(tmp_path):
    x, y = _good(), np.array([0, 9, 3, 3, 1], np.uint8)  # seed: 10 classes
    path = _write(tmp_path / "x.npz", images=x, labels=y)
    got, labels = accuracy.load_images(str(path), "seed", SIZE)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, y)
    np.testing.assert_array_equal(got, x)


def _bytes(data):
    return lambda p: p.write_bytes(data)


def _truncated(p):
    np.savez(p, images=_good())
    p.write_bytes(p.read_bytes()[:300])


def _nan(p):
    x = _good()
    x[1, 2, 3, 0] = np.nan
    np.savez(p, images=x)


REFUSED = {
    "missing": (lambda p: None, "no such file"),
    "directory": (lambda p: p.mkdir(), "it is a directory"),
    "empty": (_bytes(b""), "it is empty"),
    "random bytes": (
        _bytes(bytes(range(7, 71))),
        r"not an \.npz archive \(it starts with bytes 07",
    ),
    "zip header, then rubbish": (_bytes(b"PK\x03\x04" + bytes(60)), "damaged or truncated"),
    "truncated": (_truncated, "damaged or truncated"),
    "npy": (lambda p: np.save(open(p, "wb"), _good()), r"a single \.npy array \(np\.save\)"),
    "text": (_bytes(b"images = [[1, 2]]\n"), "a text file, not an .npz archive"),
    "pickled": (lambda p: np.savez(p, images=np.array([{}], object)), "pickled"),
    "no images": (lambda p: np.savez(p, x=_good()), r"Received: keys=\['x'\]"),
    "a typo": (lambda p: np.savez(p, images=_good(), label=np.zeros(5, int)), "'label'"),
    "3-D": (lambda p: np.savez(p, images=_good()[0]), r"Received: shape=\(8, 8, 3\)"),
    "size": (lambda p: np.savez(p, images=np.zeros((2, 9, 9, 3), np.float32)), "(2, 9, 9, 3)"),
    "NCHW": (lambda p: np.savez(p, images=_good().transpose(0, 3, 1, 2)), r"\(5, 3, 8, 8\)"),
    "no image": (lambda p: np.savez(p, images=_good(0)), r"n >= 1.*shape=\(0, 8, 8, 3\)"),
    "float64": (lambda p: np.savez(p, images=_good(dtype=np.float64)), r"astype.*dtype=float64"),
    "uint8": (lambda p: np.savez(p, images=_good(dtype=np.uint8)), "dtype=uint8"),
    "NaN": (_nan, "finite 'images'; Received: 1 NaN or infinite"),
    "labels length": (
        lambda p: np.savez(p, images=_good(), labels=np.zeros(4, int)),
        r"\(5,\).*shape=\(4,\)",
    ),
    "float labels": (
        lambda p: np.savez(p, images=_good(), labels=np.zeros(5)),
        "integers; .*dtype=float64",
    ),
    "bool labels": (lambda p: np.savez(p, images=_good(), labels=np.zeros(5, bool)), "dtype=bool"),
    "labels range": (
        lambda p: np.savez(p, images=_good(), labels=np.array([0, 1, 10, 2, 3])),
        r"in \[0, 10\) \(the 'seed' arch's classes\); Received: 1 outside, such as 10",
    ),
    "negative label": (
        lambda p: np.savez(p, images=_good(), labels=np.array([0, -1, 1, 2, 3])),
        "such as -1",
    ),
}


@pytest.mark.parametrize("case", REFUSED)
def test_load_images_refuses(tmp_path, case):
    write, match = REFUSED[case]
    path = tmp_path / "images.npz"
    write(path)
    with pytest.raises(ValueError, match=match) as e:
        accuracy.load_images(path, "seed", SIZE)
    assert "\n" not in str(e.value) and "images.npz" in str(e.value)


def test_load_images_refuses_an_unknown_arch(tmp_path):
    path = _write(tmp_path / "x.npz", images=_good())
    with pytest.raises(ValueError, match=r"Unknown arch.*Received: arch='resnet'"):
        accuracy.load_images(path, "resnet", SIZE)


def test_default_images():
    small = accuracy.default_images("seed", 32)
    assert small.shape == (accuracy.DEFAULT_IMAGES_SMALL, 32, 32, 3) and small.dtype == np.float32
    assert abs(small.mean()) < 0.01 and abs(small.std() - 1.0) < 0.01
    large = accuracy.default_images("imagenet", 224)
    assert large.shape == (accuracy.DEFAULT_IMAGES_LARGE, 224, 224, 3)
    np.testing.assert_array_equal(accuracy.default_images("seed", 32, 4), small[:4])  # seeded
    assert not np.array_equal(
        accuracy.default_images("seed", 8, 2, seed=1), accuracy.default_images("seed", 8, 2, seed=2)
    )


# The logits of real candidates: the seed arch at its size, seeded weights, 12 images (batches of
# 8 and 16 leave a padded last batch).
ARCH, S, N = "seed", 32, 12


@pytest.fixture(scope="module")
def problem():
    weights = accuracy.weights_for(ARCH, S)
    x = accuracy.default_images(ARCH, S, N)
    return weights, x, accuracy.reference_logits(ARCH, S, x, weights)


def test_reference_is_the_numpy_network(problem, monkeypatch):
    """The float64 reference against the NumPy float64 network, in chunks of 5 (the last short)."""
    weights, x, reference = problem
    monkeypatch.setattr(accuracy, "REFERENCE_CHUNK_PIXELS", 5 * S * S)
    got = accuracy.reference_logits(ARCH, S, x, weights)
    params = {k: np.float64(v) for k, v in weights.items()}
    want, _ = numpy_resnet.resnet_forward(params, np.float64(x), ARCH)
    assert got.dtype == np.float64 and got.shape == (N, blocks.ARCHS[ARCH].num_classes)
    assert accuracy.cost(got, want)["logit_error"] < 1e-12
    assert accuracy.cost(got, reference)["logit_error"] < 1e-12  # unchunked, to roundoff


@pytest.mark.parametrize("batch", [8, 16])
def test_float32_candidate_matches_the_reference(problem, batch):
    weights, x, reference = problem
    got = accuracy.logits(Workload(batch_size=batch), Config("subclassed"), x, weights)
    assert got.shape == reference.shape
    measured = accuracy.cost(got, reference)
    assert measured["logit_error"] < 1e-4 and measured["top1_agreement"] == 1.0


def test_mixed_bfloat16_costs_a_bounded_error(problem):
    weights, x, reference = problem
    workload = Workload(batch_size=8, dtype_policy="mixed_bfloat16")
    measured = accuracy.cost(accuracy.logits(workload, Config("folded"), x, weights), reference)
    assert 1e-4 < measured["logit_error"] < 5e-2, measured


def test_a_planted_error_is_measured_to_its_size(problem):
    """A candidate whose class-k bias is off by delta computes z = r + delta e_k: its figures
    follow from the reference alone (NumPy), and a 1% budget disqualifies it with them."""
    weights, x, reference = problem
    k = 3
    delta = float(np.median(reference.max(axis=1) - reference[:, k]))
    planted = dict(weights, **{"fc.bias": weights["fc.bias"] + np.float32(delta) * np.eye(10)[k]})
    got = accuracy.logits(Workload(batch_size=8), Config("subclassed"), x, planted)
    moved = reference + delta * np.eye(10)[k]
    agree = np.mean(np.argmax(moved, axis=1) == np.argmax(reference, axis=1))
    assert 0 < agree < 1  # the plant moves some predictions, not all
    measured = accuracy.cost(got, reference)
    assert measured["top1_agreement"] == agree
    want = np.max(delta / np.max(np.abs(reference), axis=1))
    assert measured["logit_error"] == pytest.approx(want, rel=1e-4)
    wrong = round((1 - agree) * N)
    assert f"({wrong} of {N} images) > 1% allowed" in accuracy.over_budget(measured, 0.01, None)


@pytest.mark.exhaustive
@pytest.mark.parametrize("engine", list(ENGINES))
def test_float32_engine_matches_the_reference(problem, engine):
    """A serving engine's artifact has a fixed batch: the padded last batch runs through it."""
    reason = ENGINES[engine].missing()
    if reason:
        pytest.skip(reason)
    weights, x, reference = problem
    got = accuracy.logits(Workload(batch_size=8), Config("subclassed", engine), x, weights)
    measured = accuracy.cost(got, reference)
    assert measured["logit_error"] < 1e-4 and measured["top1_agreement"] == 1.0


@pytest.mark.parametrize("suffix, naming", [(".npz", "canonical"), (".safetensors", "torchvision")])
def test_weights_for_reads_a_file(tmp_path, suffix, naming):
    model = blocks.resnet18("subclassed", arch=ARCH, seed=7)
    path = tmp_path / f"w{suffix}"
    blocks.save_weights(model, path, naming=naming)
    got = accuracy.weights_for(ARCH, S, path)
    want = blocks.export_weights(model)
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    seeded = accuracy.weights_for(ARCH, S)
    assert not np.array_equal(seeded["fc.kernel"], want["fc.kernel"])


def test_weights_for_passes_on_the_loaders_error(tmp_path):
    path = tmp_path / "w.npz"
    path.write_text("stem.conv.kernel = [1, 2]\n")
    with pytest.raises(ValueError, match=r"Invalid weights file .*a text file, not a weights file"):
        accuracy.weights_for(ARCH, S, path)
