"""What a measuring worker does with each request (see `worker` for the protocol)."""

from __future__ import annotations

import gc
import os

from blocks import _compat, cpu
from blocks.causes import cause
from blocks.measure import accuracy, devices, distributed, flops, steps, timing, verify
from blocks.measure.workload import Config, Workload


def onednn_enabled():
    """Whether this process runs oneDNN's kernels, as TensorFlow itself says (None: unknown).

    (A private TensorFlow module, present in every supported version; TF has no public call.)
    """
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


class Server:
    def __init__(self):
        self.prepared: dict = {}
        self.data: dict = {}  # the verification images and weights, read once

    def handle(self, request: dict) -> dict:
        op = request.get("op")
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            raise ValueError(f"Unknown request. Received: op={op!r}")
        return {"ok": True, **handler(request)}

    @staticmethod
    def failure(e: BaseException) -> dict:
        text = str(e).strip()
        # The project's messages are one line; anything longer is a framework's text, whose head
        # is a traceback.
        message = text if text and "\n" not in text else cause(e, 300)
        if not isinstance(e, (steps.Unsupported, ValueError)):
            message = f"{type(e).__name__}: {message}"
        return {"ok": False, "error": message[:300], "detail": getattr(e, "detail", "") or str(e)}

    def op_hello(self, request) -> dict:
        return {
            "pid": os.getpid(),
            "tf": _compat.TF_VERSION,
            "keras": _compat.KERAS_VERSION,
            "onednn": onednn_enabled(),
            "devices": devices.list_devices(),
            "cpu": cpu.cpu_model_name(),
        }

    def op_prepare(self, request) -> dict:
        workload = Workload.from_json(request["workload"])
        config = Config.from_json(request["config"])
        prepare = steps.prepare if config.strategy == "none" else distributed.prepare
        step = prepare(workload, config)
        call_s = min(timing.sample(step.run) for _ in range(2))
        calls = timing.calls_per_sample(call_s, float(request.get("min_sample_s", 0.0)))
        self.prepared[request["key"]] = step
        return {
            "compile_s": step.compile_s,
            "layout": step.layout,
            "call_s": call_s,
            "calls": calls,
            "output_shape": list(step.output_shape),
            "finite": step.finite,
            "flop_per_image": flops.flops_per_image(step.model, workload.mode),
            "engine": step.engine,
        }

    def op_time(self, request) -> dict:
        step = self.prepared[request["key"]]
        return {"seconds": timing.sample(step.run, int(request.get("calls", 1)))}

    def op_ceiling(self, request) -> dict:
        """GFLOP/s of a large matmul in a policy's compute dtype: the median of timed calls."""
        run, flop = steps.matmul_step(request["device"], request["dtype_policy"])
        call_s = timing.sample(run)
        calls = max(3, min(50, int(float(request.get("target_s", 2.0)) / max(call_s, 1e-6))))
        times = sorted(timing.sample(run) for _ in range(calls))
        return {"gflops_per_sec": flop / times[len(times) // 2] / 1e9, "calls": calls}

    def op_verify(self, request) -> dict:
        step = self.prepared[request["key"]]
        check = verify.check if step.config.strategy == "none" else distributed.check
        return check(step.workload, step.config)

    def op_logits(self, request) -> dict:
        """The logits of a prepared candidate's configuration, in its precision, on the
        verification images (`accuracy.logits`)."""
        step = self.prepared[request["key"]]
        images, _ = self._images(step.workload, request.get("images"))
        weights = self._weights(step.workload, request.get("weights"))
        return {"logits": accuracy.logits(step.workload, step.config, images, weights).tolist()}

    def op_reference_logits(self, request) -> dict:
        """The float64 reference's logits on the verification images, and their labels."""
        workload = Workload.from_json(request["workload"])
        images, labels = self._images(workload, request.get("images"))
        weights = self._weights(workload, request.get("weights"))
        logits = accuracy.reference_logits(workload.arch, workload.size, images, weights)
        return {"logits": logits.tolist(), "labels": None if labels is None else labels.tolist()}

    def _images(self, workload: Workload, path) -> tuple:
        """(images, labels or None): the user's file, or the default random images."""
        key = ("images", workload.arch, workload.size, path)
        if key not in self.data:
            if path is None:
                self.data[key] = (accuracy.default_images(workload.arch, workload.size), None)
            else:
                self.data[key] = accuracy.load_images(path, workload.arch, workload.size)
        return self.data[key]

    def _weights(self, workload: Workload, path) -> dict:
        key = ("weights", workload.arch, workload.size, path)
        if key not in self.data:
            self.data[key] = accuracy.weights_for(workload.arch, workload.size, path)
        return self.data[key]

    def op_drop(self, request) -> dict:
        self.prepared.pop(request["key"], None)
        gc.collect()
        return {}

    def op_exit(self, request) -> dict:
        raise SystemExit(0)
