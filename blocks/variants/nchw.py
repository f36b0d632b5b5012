"""`nchw`: the functional block in channels_first (NCHW) layout, the layout cuDNN was built around.

The model takes NHWC images like every variant and transposes once at its entry (or takes NCHW
directly with `input_format="channels_first"`). On the CPU, TensorFlow's NCHW convolution exists
only through oneDNN; `check_device` says so up front instead of failing inside a graph.
"""

from __future__ import annotations

from blocks import kernels
from blocks.registry import Variant, register
from blocks.variants.functional import basic_block

register(
    Variant(
        name="nchw",
        block=basic_block,
        model="functional",
        data_format="channels_first",
        summary="the functional block in channels_first layout, one transpose at the model's entry",
        complexity=2,
        wins="NVIDIA GPUs with cuDNN (its native layout); on the CPU, as fast as oneDNN makes it",
        check_device=kernels.check_nchw_support,
    )
)
