"""The registry: required variants, one signature, duplicates refused, misses name the valid names."""

import inspect

import pytest

import blocks
from blocks.layers import BlockArgs

REQUIRED = ("subclassed", "functional", "xla", "nchw")


def test_required_variants_are_registered():
    assert set(REQUIRED) <= set(blocks.VARIANTS)


def test_variant_fields(variant):
    assert variant.model in ("functional", "subclassed")
    assert variant.data_format in ("channels_last", "channels_first")
    assert variant.summary and variant.wins, f"{variant.name} needs a summary and a 'wins' line"


def test_every_block_has_the_one_signature(variant):
    # A class's constructor signature, read from __init__ itself: what inspect.signature(cls)
    # reports for a Keras Layer subclass (whose base defines __new__(*args, **kwargs)) differs
    # between Python 3.11 patch releases.
    target = variant.block.__init__ if inspect.isclass(variant.block) else variant.block
    params = inspect.signature(target).parameters
    expected = [f.name for f in BlockArgs.__dataclass_fields__.values()]
    names = [n for n in params if n not in ("self", "kwargs")]
    assert names == expected
    for name in expected[2:]:
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        default = BlockArgs.__dataclass_fields__[name].default
        assert params[name].default == default, name


def test_nchw_variant_is_channels_first_and_others_are_not():
    assert blocks.VARIANTS["nchw"].data_format == "channels_first"
    for name in ("subclassed", "functional", "xla"):
        assert blocks.VARIANTS[name].data_format == "channels_last"


def test_unknown_variant_lists_valid_names():
    with pytest.raises(
        ValueError,
        match=r"Unknown variant\. Expected one of \[.*'subclassed'.*\]; Received: variant='nope'",
    ):
        blocks.VARIANTS["nope"]
    with pytest.raises(ValueError, match="Received: variant='nope'"):
        blocks.resnet18("nope")
    # Mapping semantics still hold: `in` and `.get` treat a miss as absent.
    assert "nope" not in blocks.VARIANTS
    assert blocks.VARIANTS.get("nope") is None


def test_duplicate_registration_raises():
    existing = blocks.VARIANTS["functional"]
    with pytest.raises(ValueError, match="already registered"):
        blocks.register(existing)
    assert blocks.VARIANTS["functional"] is existing


def test_register_and_unregister_a_new_variant():
    v = blocks.Variant(
        name="functional_copy",
        block=blocks.VARIANTS["functional"].block,
        model="functional",
        summary="a copy, for this test",
        wins="nowhere",
    )
    blocks.register(v)
    try:
        assert blocks.VARIANTS["functional_copy"] is v
        assert list(blocks.VARIANTS)[-1] == "functional_copy"
    finally:
        blocks.VARIANTS.unregister("functional_copy")
    assert "functional_copy" not in blocks.VARIANTS


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="bad name"), r"Invalid variant name.*Received: name='bad name'"),
        (
            dict(model="sequential"),
            r"Expected one of \['functional', 'subclassed'\]; Received: model='sequential'",
        ),
        (dict(data_format="NHWC"), r"Invalid data_format.*Received: data_format='NHWC'"),
        (dict(model="subclassed"), r"needs a keras.layers.Layer subclass as block"),
    ],
)
def test_variant_validation(kwargs, message):
    base = dict(name="x", block=blocks.VARIANTS["functional"].block, model="functional")
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        blocks.Variant(**base)
