"""Worker processes, from the parent's side: started with a runtime's environment, asked one
request at a time, always reaped.

Every request has a deadline: a worker that does not answer in time is killed (its whole process
group) and the request fails with `WorkerError` naming the request and the time; a worker that
dies is reported with its exit code or signal and the last line it wrote to stderr. A `Pool`
closes every worker it started when it is left, by an error, a Ctrl-C or a normal exit, and a
worker ends by itself if its parent dies (see `worker`). Workers talk over pipes only.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Optional

from blocks.errors import DetailedError
from blocks.measure import distributed, runtimes
from blocks.measure.worker import PARENT_VAR
from blocks.registry import IMPORTS_VAR
from blocks.variants import VARIANTS

# Every worker is started from this one thread, which lives as long as the process: a worker asks
# the kernel to kill it when its parent dies (PR_SET_PDEATHSIG, see `worker`), and Linux counts the
# *thread* that forked it as that parent, so a worker started from a short-lived thread (a
# ThreadPoolExecutor's, say) would be killed the moment that thread ended.
_SPAWNER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="blocks-spawner")


def _spawn(*args, **kwargs) -> subprocess.Popen:
    return _SPAWNER.submit(subprocess.Popen, *args, **kwargs).result()


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


class RequestFailed(DetailedError):
    """A worker answered that a request failed (the error in one line; `detail`: all of it)."""


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class Worker:
    """One `python -m blocks.measure.worker` process in `runtime`, plus `env` on top (`prefix`: a
    command it runs under, such as `ip netns exec NAME`)."""

    def __init__(
        self,
        name: str,
        runtime: str = "default",
        env: Optional[dict] = None,
        imports=(),
        prefix=(),
    ):
        self.name = name
        self.runtime = runtimes.get(runtime)
        environ = self.runtime.environ(dict(os.environ))
        environ.update(env or {})
        if imports:
            environ[IMPORTS_VAR] = ",".join(imports)
        environ[PARENT_VAR] = str(os.getpid())
        self._stderr = tempfile.TemporaryFile()
        self.proc = _spawn(
            [*prefix, sys.executable, "-m", "blocks.measure.worker"],
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
        self.send(op, what, **fields)
        return self.receive(time.monotonic() + timeout_s, what)

    def send(self, op: str, what: str, **fields) -> None:
        if not self.alive:
            raise self._died(what)
        try:
            self.proc.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died(what) from None

    def receive(self, deadline: float, what: str) -> dict:
        reply = json.loads(self._read_line(deadline, what))
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

    def ask_to_exit(self) -> None:
        if self.alive:
            try:
                self.proc.stdin.write(b'{"op": "exit"}\n')
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass

    def close(self, grace_s: float = 5.0) -> None:
        """Ask the worker to exit, kill it if it does not, and release its pipes."""
        self.ask_to_exit()
        if self.alive:
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._stderr.close()


class NetworkNamespace:
    """A private network namespace with only a loopback interface, for a local cluster.

    TensorFlow's gRPC server (MultiWorkerMirroredStrategy) listens on every interface of its
    host and has no option to listen on loopback only; inside this namespace every interface is
    loopback. Needs root and iproute2 (`ip netns`); deleted on `close`, and a namespace left by a
    process that was killed is deleted the next time one is made.
    """

    PREFIX = "resnet-blocks-"
    _count = 0

    def __init__(self):
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise WorkerError(
                "a local multi-worker cluster needs a private network namespace (root and "
                "iproute2's `ip netns`), so that TensorFlow's gRPC servers, which listen on every "
                "interface, are reachable on loopback only"
            )
        self._remove_stale()
        NetworkNamespace._count += 1
        self.name = f"{self.PREFIX}{os.getpid()}-{NetworkNamespace._count}"
        for command in (
            ["ip", "netns", "add", self.name],
            ["ip", "-n", self.name, "link", "set", "lo", "up"],
        ):
            done = subprocess.run(command, capture_output=True, text=True, timeout=30)
            if done.returncode != 0:
                self.close()
                raise WorkerError(
                    f"could not make network namespace {self.name}: {done.stderr.strip()}"
                )

    @property
    def prefix(self) -> list:
        return ["ip", "netns", "exec", self.name]

    def close(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, timeout=30)

    @classmethod
    def _remove_stale(cls) -> None:
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
        for line in listed.stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            if not name.startswith(cls.PREFIX):
                continue
            pid = name[len(cls.PREFIX) :].split("-")[0]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)


class Group:
    """The processes of one local multi-worker cluster, in a private network namespace, asked
    together: a request goes to every member and the chief's (member 0's) answer is returned.

    Quacks like a `Worker`, so a race can time a cluster as one entrant.
    """

    def __init__(self, name: str, runtime: str, size: int, env: Optional[dict] = None, imports=()):
        self.name = name
        self.netns = NetworkNamespace()
        ports = [distributed.CLUSTER_PORT + i for i in range(size)]
        self.members = []
        try:
            for i in range(size):
                member_env = {
                    **(env or {}),
                    "TF_CONFIG": distributed.tf_config(ports, i),
                    distributed.STRATEGY_VAR: "multiworker",
                }
                self.members.append(
                    Worker(f"{name}/{i}", runtime, member_env, imports, self.netns.prefix)
                )
        except BaseException:
            self.close()
            raise
        self.info: dict = {}

    @property
    def alive(self) -> bool:
        return all(m.alive for m in self.members)

    def call(self, op: str, timeout_s: float, **fields) -> dict:
        """Send to every member, then wait for every answer; one failure stops the group."""
        what = f"'{op}'" + (f" of {fields['key']}" if "key" in fields else "")
        deadline = time.monotonic() + timeout_s
        try:
            for m in self.members:
                m.send(op, what, **fields)
            replies = [m.receive(deadline, what) for m in self.members]
        except (WorkerError, RequestFailed):
            self.kill()
            raise
        return replies[0]

    def hello(self, timeout_s: float = 120.0) -> dict:
        self.info = self.call("hello", timeout_s)
        return self.info

    def kill(self) -> None:
        for m in self.members:
            m.kill()

    def ask_to_exit(self) -> None:
        for m in self.members:
            m.ask_to_exit()

    def close(self, grace_s: float = 5.0) -> None:
        for m in self.members:
            m.close(grace_s)
        self.netns.close()


class Pool:
    """Workers by name, closed together when the `with` block is left, whatever the reason."""

    def __init__(self, imports=()):
        self.workers: dict = {}
        self.imports = list(imports)  # see IMPORTS_VAR

    def start(self, name: str, runtime: str = "default", env: Optional[dict] = None) -> Worker:
        worker = Worker(name, runtime, env, self.imports)
        self.workers[name] = worker
        return worker

    def start_for(self, name: str, config) -> "Worker | Group":
        """The process (or cluster) a configuration's runtime and strategy need."""
        if config.strategy == "multiworker":
            group = Group(name, config.runtime, config.replicas, None, self.imports)
            self.workers[name] = group
            return group
        env = distributed.process_env(config)
        return self.start(name, config.runtime, env)

    def close(self, name: Optional[str] = None, grace_s: float = 5.0) -> None:
        """Close one worker, or all: every one is asked first, so they exit side by side
        within one grace period, not one after another."""
        names = [name] if name is not None else list(self.workers)
        closing = [w for w in (self.workers.pop(n, None) for n in names) if w is not None]
        for worker in closing:
            worker.ask_to_exit()
        until = time.monotonic() + grace_s
        for worker in closing:
            worker.close(max(0.0, until - time.monotonic()))

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
