"""Worker processes, from the parent's side: started with a runtime's environment, asked one
request at a time, always reaped.

Every request has a deadline: a worker that does not answer in time is killed (its whole process
group) and the request fails with `WorkerError` naming the request and the time; a worker that
dies is reported with its exit code or signal and the last line it wrote to stderr. A `Pool`
closes every worker it started when it is left, by an error, a Ctrl-C or a normal exit, and a
worker ends by itself if its parent dies (see `worker`). Workers talk over pipes only.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from typing import Optional

from blocks.measure import runtimes
from blocks.variants import VARIANTS

# Modules a worker imports after TensorFlow, comma-separated: those that register the variants it
# must build beyond the built-in ones (a variant registered in a user's module is unknown to a
# fresh process until that module is imported there too).
IMPORTS_VAR = "RESNET_BLOCKS_IMPORTS"


def variant_modules(names) -> list:
    """The modules that register `names`, where they are not the package's own."""
    modules = []
    for name in names:
        module = getattr(VARIANTS[name].block, "__module__", "") or ""
        if module and not module.startswith("blocks.") and module not in modules:
            modules.append(module)
    return modules


class WorkerError(RuntimeError):
    """A worker died or did not answer in time. The message is one line."""


class RequestFailed(RuntimeError):
    """A worker answered that a request failed (`error`: one line; `detail`: all of it)."""

    def __init__(self, error: str, detail: str = ""):
        super().__init__(error)
        self.detail = detail


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class Worker:
    """One `python -m blocks.measure.worker` process in `runtime`, plus `env` on top."""

    def __init__(self, name: str, runtime: str = "default", env: Optional[dict] = None, imports=()):
        self.name = name
        self.runtime = runtimes.get(runtime)
        environ = self.runtime.environ(dict(os.environ))
        environ.update(env or {})
        if imports:
            environ[IMPORTS_VAR] = ",".join(imports)
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "blocks.measure.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=environ,
            start_new_session=True,  # its own process group: killed whole, spared the user's ^C
        )
        self._buffer = b""
        self.info: dict = {}

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def _last_stderr_line(self) -> str:
        try:
            self._stderr.seek(0)
            lines = [ln for ln in self._stderr.read().decode("utf-8", "replace").splitlines() if ln]
        except (OSError, ValueError):
            return ""
        return lines[-1][:200] if lines else ""

    def _died(self, what: str) -> WorkerError:
        code = self.proc.wait()
        how = _signal_name(code) if code < 0 else f"exit code {code}"
        last = self._last_stderr_line()
        self.close()
        return WorkerError(
            f"worker {self.name} died ({how}) during {what}" + (f": {last}" if last else "")
        )

    def _read_line(self, deadline: float, what: str) -> bytes:
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.kill()
                    raise WorkerError(
                        f"worker {self.name} did not finish {what} in time; it was stopped"
                    )
                if not selector.select(timeout=min(left, 1.0)):
                    if not self.alive:
                        raise self._died(what)
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise self._died(what)
                self._buffer += chunk
        finally:
            selector.close()
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def call(self, op: str, timeout_s: float, **fields) -> dict:
        """Send one request and wait up to `timeout_s` for its answer.

        Raises:
            WorkerError: the worker died or timed out (it is gone afterwards).
            RequestFailed: the worker answered that the request failed.
        """
        what = f"'{op}'" + (f" of {fields['key']}" if "key" in fields else "")
        if not self.alive:
            raise self._died(what)
        try:
            self.proc.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died(what) from None
        reply = json.loads(self._read_line(time.monotonic() + timeout_s, what))
        if not reply.pop("ok", False):
            raise RequestFailed(reply.get("error", "failed"), reply.get("detail", ""))
        return reply

    def hello(self, timeout_s: float = 120.0) -> dict:
        """Wait until TensorFlow has loaded; what the worker runs (versions, oneDNN, devices)."""
        self.info = self.call("hello", timeout_s)
        return self.info

    def kill(self) -> None:
        """Stop the worker's whole process group now."""
        if self.alive:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        self.proc.wait()

    def close(self, grace_s: float = 5.0) -> None:
        """Ask the worker to exit, kill it if it does not, and release its pipes."""
        if self.alive:
            try:
                self.proc.stdin.write(b'{"op": "exit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(grace_s)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                pass
        self.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._stderr.close()


class Pool:
    """Workers by name, closed together when the `with` block is left, whatever the reason."""

    def __init__(self, imports=()):
        self.workers: dict = {}
        self.imports = list(imports)  # see IMPORTS_VAR

    def start(self, name: str, runtime: str = "default", env: Optional[dict] = None) -> Worker:
        worker = Worker(name, runtime, env, self.imports)
        self.workers[name] = worker
        return worker

    def close(self, name: Optional[str] = None) -> None:
        names = [name] if name is not None else list(self.workers)
        for n in names:
            worker = self.workers.pop(n, None)
            if worker is not None:
                worker.close()

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
