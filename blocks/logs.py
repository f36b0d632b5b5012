"""TensorFlow's own log output, kept off the user's terminal unless asked for.

TensorFlow's C++ side prints banners at import (CPU features; "oneDNN custom operations are on",
which TF_CPP_MIN_LOG_LEVEL does not silence, since it is written before TensorFlow initialises
its logging) and run-time notes later (XLA, rendezvous); its Python side logs retracing notes.
The command line, `pytest bench/`, the test suite and the measuring workers call
`quiet_tensorflow()` before anything imports TensorFlow: it sets TF_CPP_MIN_LOG_LEVEL=2 (warnings
and notes off, errors kept), imports TensorFlow with the import banners filtered out of stderr
(any other line still gets through), and turns TensorFlow's Python logger down to errors.
`--verbose`, or RESNET_BLOCKS_VERBOSE=1 in the environment, leaves all of it on; an explicit
TF_CPP_MIN_LOG_LEVEL is always respected.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile

VERBOSE_VAR = "RESNET_BLOCKS_VERBOSE"
# Lines TensorFlow writes to stderr while it is imported, before its log level applies.
IMPORT_BANNERS = (
    "All log messages before absl::InitializeLog() is called",
    "port.cc:",
    "cpu_feature_guard.cc:",
    "To enable the following instructions:",
    "cudart_stub.cc:",  # the full `tensorflow` (a GPU build) on a machine without CUDA
)


def verbose_requested(environ=None) -> bool:
    value = (os.environ if environ is None else environ).get(VERBOSE_VAR, "")
    return value.strip().lower() not in ("", "0", "false", "no", "off")


@contextlib.contextmanager
def _stderr_without(banners):
    """Capture file descriptor 2 (C++ writes there too) and pass on every line but `banners`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines(True) if not any(b in line for b in banners)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def quiet_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow without its banners and turn its log output down to errors."""
    if verbose or verbose_requested():
        os.environ[VERBOSE_VAR] = "1"  # and so in every worker process started from here
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules:
        with _stderr_without(IMPORT_BANNERS):
            import tensorflow  # noqa: F401  (imported here, under the filter)
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
