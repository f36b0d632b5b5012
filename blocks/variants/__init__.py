"""One module per block variant; importing a module registers its variant in `blocks.VARIANTS`.

To add a variant: write `blocks/variants/<name>.py` with a block that takes the one block
signature (`blocks.layers.BlockArgs`), call `register(Variant(...))` at the bottom, and import the
module below. The tests and benchmarks pick it up from the registry with no other edits.
"""

from blocks.registry import VARIANTS, get_variant, register
from blocks.variants import folded, functional, nchw, subclassed, xla  # noqa: F401

__all__ = ["VARIANTS", "get_variant", "register"]
