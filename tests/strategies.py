"""hypothesis strategies shared by the property tests."""

from hypothesis import strategies as st

import blocks


@st.composite
def block_cases(draw, min_batch=1, min_size=1, max_size=9, min_channels=1, max_channels=6):
    """A BasicBlock problem: input batch/size/channels, filters, stride, arch options, data seed.

    Sizes go down to 1 and take odd and even values; channels and filters are drawn independently,
    so stride-1 blocks that change the channel count (a projection shortcut) come up too.
    """
    return dict(
        batch=draw(st.integers(min_batch, 3)),
        height=draw(st.integers(min_size, max_size)),
        width=draw(st.integers(min_size, max_size)),
        channels=draw(st.integers(min_channels, max_channels)),
        filters=draw(st.integers(min_channels, max_channels)),
        strides=draw(st.sampled_from([1, 2])),
        arch=draw(st.sampled_from(sorted(blocks.ARCHS))),
        seed=draw(st.integers(0, 2**31 - 1)),
    )
