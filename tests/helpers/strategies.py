"""hypothesis strategies shared by the property tests.

A drawn block reaches every path of the block code: both paddings ("same", asymmetric for even
sizes at stride 2, and "symmetric"), bias and shortcut BN apart from each other and from the
padding, identity and projection shortcuts (stride 2, or stride 1 with a channel change), odd and
even sizes down to 1, channels up to 16, and BN constants other than Keras's defaults.
"""

from __future__ import annotations

from hypothesis import strategies as st

# (momentum, epsilon): Keras's defaults (the seed arch), torchvision's (imagenet), and an odd pair
# so that a block which ignored its arguments for a default would show.
BN_CONSTANTS = ((0.99, 1e-3), (0.9, 1e-5), (0.7, 1e-2))


def out_size(size: int, strides: int) -> int:
    return -(-size // strides)


@st.composite
def block_cases(draw, min_bn_values=8, min_size=1, max_size=9, max_channels=16, min_batch=1):
    """A BasicBlock problem: input batch/size/channels, filters, stride, the block's options and
    a data seed.

    `min_bn_values`: the batch is drawn large enough that each BN normalises over at least that
    many values per channel in training mode (see tolerances.DEGENERATE_BN).
    """
    height = draw(st.integers(min_size, max_size))
    width = draw(st.integers(min_size, max_size))
    strides = draw(st.sampled_from([1, 2]))
    per_image = out_size(height, strides) * out_size(width, strides)
    least = max(min_batch, -(-min_bn_values // per_image))
    momentum, epsilon = draw(st.sampled_from(BN_CONSTANTS))
    return dict(
        batch=draw(st.integers(least, least + 2)),
        height=height,
        width=width,
        channels=draw(st.integers(1, max_channels)),
        filters=draw(st.integers(1, max_channels)),
        strides=strides,
        use_bias=draw(st.booleans()),
        shortcut_bn=draw(st.booleans()),
        padding=draw(st.sampled_from(["same", "symmetric"])),
        bn_momentum=momentum,
        bn_epsilon=epsilon,
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def paths(case: dict, graph: bool) -> set:
    """The paths of the block code that one case takes (see PATHS)."""
    s, h, w = case["strides"], case["height"], case["width"]
    projection = s != 1 or case["channels"] != case["filters"]
    bn_values = case["batch"] * out_size(h, s) * out_size(w, s)
    got = {
        f"stride {s}",
        "projection shortcut" if projection else "identity shortcut",
        f"use_bias={case['use_bias']} with shortcut_bn={case['shortcut_bn']}",
        f"BN constants {case['bn_momentum']}/{case['bn_epsilon']}",
        "tf.function" if graph else "eager",
    }
    if s == 2:
        if case["padding"] == "symmetric":
            got.add("symmetric padding at stride 2")
        elif h % 2 == 0 or w % 2 == 0:
            got.add("asymmetric 'same' padding (an even size at stride 2)")
    if projection and case["shortcut_bn"]:
        got.add("projection with shortcut BN")
    if case["channels"] > 6:
        got.add("more than 6 input channels")
    if case["filters"] > 6:
        got.add("more than 6 filters")
    if bn_values >= 8:
        got.add("BN over at least 8 values")
    return got


# Every path, each taken by at least one drawn case of every run of the property test.
PATHS = frozenset(
    {
        "stride 1",
        "stride 2",
        "identity shortcut",
        "projection shortcut",
        "projection with shortcut BN",
        "symmetric padding at stride 2",
        "asymmetric 'same' padding (an even size at stride 2)",
        "more than 6 input channels",
        "more than 6 filters",
        "BN over at least 8 values",
        "tf.function",
        "eager",
    }
    | {f"use_bias={b} with shortcut_bn={sb}" for b in (True, False) for sb in (True, False)}
    | {f"BN constants {m}/{e}" for m, e in BN_CONSTANTS}
)


BLOCK_OPTIONS = ("use_bias", "shortcut_bn", "padding", "bn_momentum", "bn_epsilon")


def options_of(case: dict) -> dict:
    return {k: case[k] for k in BLOCK_OPTIONS}


# --- Bad input for the fuzzer (tests/test_fuzz.py) ----------------------------------------------
# Names of the decoys every fuzzed case finds in its directory (see test_fuzz.Sandbox), missing
# paths, and paths a run may legitimately create: as command-line values and as API paths.
DECOY_PATHS = (
    "picks.json",  # a directory
    "model.onnx",  # a directory
    "adir",
    "results",  # a directory holding a JSON file of another shape
    "w.npz",  # a text file
    "notes.txt",
    "data.bin",  # PNG-ish bytes
    "image.png",
    "empty.npz",
    "other.json",  # JSON of another shape
    "list.json",
    "trunc.npz",
    "trunc.safetensors",
    "small.npz",  # weights of another model
    "small.safetensors",
    "run.json",  # a valid benchmark run
)
MISSING_PATHS = ("missing.json", "missing.npz", "nodir/x.json", "nodir/w.npz", "")
NEW_PATHS = ("new.npz", "new.safetensors", "new.SAFETENSORS", "new.h5", "new.pt", "new", "new.png")
FUZZ_PATHS = DECOY_PATHS + MISSING_PATHS + NEW_PATHS

# Wrong types, negatives, zero, huge and non-finite numbers, unknown names, junk comma lists,
# whitespace, option-like strings: what a command line can be given where a value belongs.
JUNK_TEXT = (
    "-1",
    "0",
    "1e309",
    "99999999999999999999",
    "nan",
    "inf",
    "-inf",
    "1.5",
    "0x10",
    "abc",
    "",
    " ",
    "nope",
    "Subclassed",
    "graph,,nope",
    ",",
    "graph, xla",
    "é",
    "--json",
    "-",
    "None",
    "GPU:0",
    "CPU:7",
)


def _mostly(valid, junk):
    """`valid` three times in four (so that most runs get past the parser), else `junk`."""
    return st.integers(0, 3).flatmap(lambda i: valid if i else junk)


def cli_value(valid=()):
    """A value for an option: mostly one it accepts (`valid`), else junk or a path."""
    junk = st.one_of(st.sampled_from(JUNK_TEXT), st.sampled_from(FUZZ_PATHS), st.text(max_size=6))
    return _mostly(st.sampled_from(tuple(valid)), junk) if valid else junk


def csv_of(names, junk=True):
    """Comma lists of `names` (repeats too), with junk and blanks mixed in unless `junk=False`."""
    item = st.sampled_from(tuple(names))
    if junk:
        item = _mostly(item, st.sampled_from(("nope", "", " ", "GRAPH")))
    return st.lists(item, min_size=1, max_size=3).map(",".join)
