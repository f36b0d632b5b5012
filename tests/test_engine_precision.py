"""Serving engines in a reduced precision: taken only where the engine computes in it natively on
this CPU, set by the same hint in the step and in the serving code a user copies, refused in one
line elsewhere. The fast checks run OpenVINO on a small network built with its own API (no
conversion) against NumPy float64; the seed ResNet18 runs under -m exhaustive."""

import numpy as np
import pytest

import blocks
from blocks import cpu, engines
from blocks.checks import DTYPE_POLICIES
from blocks.executions import ENGINES
from tests import test_engines
from tests.test_engines import BATCH, installed, rel, run_alone

seeded = test_engines.seeded  # the seed ResNet18, its images and NumPy float64 logits

REDUCED = [p for p in DTYPE_POLICIES if p != "float32"]
AVX2_ONLY = {"sse4_2", "avx", "avx2", "fma", "f16c"}


def ov_or_skip():
    installed("openvino")
    import openvino as ov

    return ov


def native_here(ov, policy: str) -> bool:
    """What the CPU and OpenVINO's own plugin say, read apart from the engine module."""
    flags = {"mixed_bfloat16": {"avx512_bf16", "amx_bf16"}, "mixed_float16": {"avx512_fp16"}}
    word = {"mixed_bfloat16": "BF16", "mixed_float16": "FP16"}[policy]
    listed = word in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return listed and bool(flags[policy] & cpu.cpu_flags())


def bf16_or_skip():
    ov = ov_or_skip()
    if not native_here(ov, "mixed_bfloat16"):
        pytest.skip(f"no native bfloat16 on {cpu.cpu_model_name()} ({cpu.simd_summary()})")
    return ov


def conv(x, w):
    """NCHW 3x3 convolution, stride 1, padding 1, in float64."""
    x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))
    return np.einsum("nchwij,ocij->nohw", windows, w)


@pytest.fixture(scope="module")
def small_ir(tmp_path_factory):
    """A two-convolution network written as an IR with OpenVINO's own API, its weights, images,
    and the float64 logits NumPy computes for them."""
    ov = ov_or_skip()
    from openvino import opset13 as ops

    rng = np.random.default_rng(5)
    w1, w2 = rng.normal(size=(16, 3, 3, 3)) / 5, rng.normal(size=(16, 16, 3, 3)) / 12
    dense = rng.normal(size=(16, 10))
    images = rng.normal(size=(BATCH, 3, 8, 8)).astype(np.float32)
    x = ops.parameter([BATCH, 3, 8, 8], np.float32, name="images")
    pad = [1, 1]
    h = ops.relu(ops.convolution(x, w1.astype(np.float32), [1, 1], pad, pad, [1, 1]))
    h = ops.relu(ops.convolution(h, w2.astype(np.float32), [1, 1], pad, pad, [1, 1]))
    pooled = ops.reduce_mean(h, ops.constant(np.array([2, 3])), keep_dims=False)
    logits = ops.matmul(pooled, ops.constant(dense.astype(np.float32)), False, False)
    path = str(tmp_path_factory.mktemp("ir") / "small.xml")
    ov.save_model(ov.Model([logits], [x]), path, compress_to_fp16=False)
    h64 = np.maximum(conv(np.maximum(conv(images.astype(np.float64), w1), 0), w2), 0)
    return path, images, h64.mean(axis=(2, 3)) @ dense


def test_an_unknown_precision_is_one_line(seeded, tmp_path):
    model = seeded[0]
    calls = {
        "compiled_step": lambda p: blocks.compiled_step(
            model, "inference", "openvino", precision=p
        ),
        "export": lambda p: blocks.export(model, "onnx", tmp_path / "m.onnx", precision=p),
        "precision_refusal": lambda p: engines.precision_refusal("openvino", p),
    }
    for name, call in calls.items():
        # compiled_step's None is its default (float32 for an engine)
        for bad in ("bfloat16", "float64", 16) + ((None,) if name != "compiled_step" else ()):
            with pytest.raises(ValueError) as e:
                call(bad)
            assert str(e.value) == (
                f"Unknown precision. Expected one of {list(DTYPE_POLICIES)}; "
                f"Received: precision={bad!r}"
            ), name
    with pytest.raises(ValueError, match="Expected precision='float32'; Received: precision='mi"):
        blocks.compiled_step(model, "inference", "graph", precision="mixed_bfloat16")
    with pytest.raises(ValueError, match="for format 'saved_model'.*Expected precision='float32'"):
        blocks.export(model, "saved_model", tmp_path / "sm", precision="mixed_bfloat16")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["onnx", "litert"])
def test_onnx_runtime_and_litert_refuse_reduced_precision_in_one_line(name, seeded, tmp_path):
    installed(name)
    model = seeded[0]
    assert engines.precision_refusal(name, "float32") is None
    for policy in REDUCED:
        reason = engines.precision_refusal(name, policy)
        assert reason and "\n" not in reason and f"does not run {policy} natively" in reason
        with pytest.raises(engines.EngineError) as e:
            blocks.compiled_step(model, "inference", name, precision=policy)
        assert str(e.value) == reason
        with pytest.raises(engines.EngineError, match=reason[:40]):
            blocks.export(model, name, tmp_path / f"m{ENGINES[name].suffixes[0]}", precision=policy)
        with pytest.raises(engines.EngineError, match=reason[:40]):
            engines.implementation(name).serving_code("m", 2, policy)  # not float32 renamed
    assert list(tmp_path.iterdir()) == []  # refused before anything was converted


def test_openvino_refusal_follows_the_cpu_and_its_plugin(monkeypatch, seeded):
    ov = ov_or_skip()
    for policy in REDUCED:
        assert (engines.precision_refusal("openvino", policy) is None) == native_here(ov, policy)
    monkeypatch.setattr(cpu, "cpu_flags", lambda: set(AVX2_ONLY))
    monkeypatch.setattr(cpu, "is_x86_64", lambda: True)
    for policy, hint in (("mixed_bfloat16", "bf16"), ("mixed_float16", "f16")):
        reason = engines.precision_refusal("openvino", policy)
        assert reason.startswith(f"OpenVINO does not run {policy} natively on ")
        assert cpu.cpu_model_name() in reason and "(AVX2)" in reason and "\n" not in reason
        assert f"the {hint} hint would" in reason
        with pytest.raises(engines.EngineError, match="natively"):
            blocks.compiled_step(seeded[0], "inference", "openvino", precision=policy)
    assert "emulated" in engines.precision_refusal("openvino", "mixed_bfloat16")
    assert engines.precision_refusal("openvino", "float32") is None
    # The flags alone do not decide: the plugin's word is needed as well.
    monkeypatch.setattr(cpu, "cpu_flags", lambda: AVX2_ONLY | {"avx512_bf16", "avx512_fp16"})
    module = engines.implementation("openvino")
    monkeypatch.setattr(module, "capabilities", lambda: ("FP32", "INT8"))
    for policy, word in (("mixed_bfloat16", "BF16"), ("mixed_float16", "FP16")):
        reason = engines.precision_refusal("openvino", policy)
        assert reason.endswith(f": its CPU plugin lists FP32, INT8, no {word}")


def test_openvino_bf16_computes_in_bfloat16_near_float32(small_ir):
    """The hint is read back from OpenVINO, and the logits move by bfloat16's rounding: close to
    NumPy float64's, but not float32's exact ones."""
    bf16_or_skip()
    path, images, reference = small_ir
    f32 = engines.load("openvino", path, 2)
    bf16 = engines.load("openvino", path, 2, "mixed_bfloat16")
    assert (f32.precision, bf16.precision) == ("float32", "mixed_bfloat16")
    exact, rounded = f32.run(images), bf16.run(images)
    assert rel(exact, reference) <= 1e-5  # float32 unchanged
    assert 1e-4 <= rel(rounded, reference) <= 3e-2
    assert 1e-4 <= rel(rounded, exact) <= 3e-2


def test_openvino_serving_code_sets_the_same_hint(small_ir):
    ov = bf16_or_skip()
    path, images, reference = small_ir
    module = engines.implementation("openvino")
    for policy, type_ in (("float32", ov.Type.f32), ("mixed_bfloat16", ov.Type.bf16)):
        scope = {"images": images}
        exec("\n".join(module.serving_code(path, 2, policy)), scope)  # as a user pastes it
        assert scope["compiled"].get_property("INFERENCE_PRECISION_HINT") == type_
        assert rel(scope["logits"], reference) <= (1e-5 if policy == "float32" else 3e-2)


def test_openvino_substituting_another_precision_is_refused(small_ir):
    """Asked for f16 without native float16, OpenVINO compiles another precision and says nothing:
    the engine reads the hint back and refuses in one line."""
    ov = ov_or_skip()
    if native_here(ov, "mixed_float16"):
        pytest.skip(f"{cpu.cpu_model_name()} computes float16 natively: nothing is substituted")
    module = engines.implementation("openvino")
    with pytest.raises(engines.EngineError) as e:
        module.load(small_ir[0], 2, "mixed_float16")
    assert "when asked for f16 (mixed_float16)" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.exhaustive  # one OpenVINO conversion of the seed ResNet18 (14 s here)
def test_openvino_bf16_step_and_export_of_the_seed_network(seeded, tmp_path):
    """compiled_step and export with precision='mixed_bfloat16': the network's function within
    bfloat16's rounding; the export's serving lines run alone and read back bf16."""
    ov = bf16_or_skip()
    model, images, reference = seeded
    step = blocks.compiled_step(model, "inference", "openvino", precision="mixed_bfloat16")
    assert step.precision == "mixed_bfloat16"
    assert 1e-4 <= rel(step(images), reference) <= 3e-2
    path = tmp_path / "out" / "resnet18.xml"
    path.parent.mkdir()
    blocks.export(model, "openvino", path, batch_size=BATCH, precision="mixed_bfloat16")
    serving = engines.implementation("openvino").serving_code(str(path), 2, "mixed_bfloat16")
    read_back = 'assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16'
    alone = run_alone([*serving, read_back], images, tmp_path)
    assert 1e-4 <= rel(alone, reference) <= 3e-2
    config = engines.implementation("openvino").config(2, "mixed_bfloat16")
    plain = ov.Core().compile_model(str(path), "CPU", config)(images)[0]
    assert rel(plain, alone) <= 1e-6
