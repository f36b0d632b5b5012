"""A measuring worker: one TensorFlow process holding compiled steps, timed on request.

Started by `blocks.measure.workers` as `python -m blocks.measure.worker`, with its runtime's
environment. It reads one JSON request per line on stdin and answers one JSON line on stdout:

    {"op": "hello"}                                   -> versions, oneDNN state, devices
    {"op": "prepare", "key", "workload", "config", "min_sample_s"}
                                                      -> compile_s, layout, call_s, calls
    {"op": "time", "key", "calls"}                    -> seconds (per call, one sample)
    {"op": "verify", "key"}                           -> passed, checks, text
    {"op": "drop", "key"} / {"op": "exit"}

A request that fails answers {"ok": false, "error": one line, "detail": TensorFlow's words}.
Anything else the process prints goes to stderr, never into the protocol. It exits when stdin
closes, and a watchdog ends it if the process that started it dies, so no worker outlives its
parent.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback

# The PID of the process that started the worker, which the worker must not outlive.
PARENT_VAR = "RESNET_BLOCKS_WORKER_PARENT"


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(3)
        time.sleep(0.5)


def _die_with_parent() -> None:
    """On Linux, the kernel kills this process when its parent dies (PR_SET_PDEATHSIG): that holds
    even while a TensorFlow call keeps the watchdog thread from running."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # the watchdog thread remains


def main() -> int:
    # The process that started this one, as it said (it may have died before this line ran, and
    # getppid() would then name whoever adopted the orphan).
    parent = int(os.environ.get(PARENT_VAR) or os.getppid())
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the kernel was told
        return 3
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    # The protocol owns the real stdout; print() from anything else lands on stderr.
    protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    from blocks import logs

    logs.quiet_tensorflow()
    from blocks.measure import distributed

    distributed.configure_process()  # before anything initialises TensorFlow's devices
    from blocks.measure.server import Server
    from blocks.registry import import_user_modules

    import_user_modules()  # after TensorFlow: the variants of the user's modules

    server = Server()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            reply = server.handle(request)
        except SystemExit:
            protocol.write(json.dumps({"ok": True}) + "\n")
            return 0
        except Exception as e:  # the parent decides what a failure means
            reply = server.failure(e)
            traceback.print_exc(file=sys.stderr)
        protocol.write(json.dumps(reply) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
