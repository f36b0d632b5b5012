"""TensorFlow's own log output, kept off the user's terminal unless asked for.

TensorFlow's C++ side prints start-up banners (CPU features, oneDNN, XLA) and run-time notes at
import and on first use; its Python side logs retracing notes. The command line, `pytest bench/`,
the test suite and the measuring workers call `quiet_tensorflow()` before TensorFlow is imported.
`--verbose`, or RESNET_BLOCKS_VERBOSE=1 in the environment, leaves them on; an explicit
TF_CPP_MIN_LOG_LEVEL is always respected. (A leaf module: it imports nothing.)
"""

from __future__ import annotations

import logging
import os

VERBOSE_VAR = "RESNET_BLOCKS_VERBOSE"


def verbose_requested(environ=None) -> bool:
    value = (os.environ if environ is None else environ).get(VERBOSE_VAR, "")
    return value.strip().lower() not in ("", "0", "false", "no", "off")


def quiet_tensorflow(verbose: bool = False) -> None:
    """Silence TensorFlow's C++ INFO/WARNING lines and its Python logger's notes.

    Call before TensorFlow is imported: the C++ level is read once, at import.
    """
    if verbose or verbose_requested():
        os.environ[VERBOSE_VAR] = "1"  # and so in every worker process started from here
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # The Python side logs through the "tensorflow" logger (and absl's, which it forwards to).
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
