"""One peer per process: the worker that hosts a peer, and the handle the parent drives it by.

``gpugrad bench`` (and ``pytest bench/``) start one long-lived worker process per peer and send
it requests over a pipe: check one step, build the timed model, run n steps, measure memory.
A worker loads only its own peer's library: this file is run as a script, and it reaches its
sibling modules (``problems``, ``peers``, ``machine``, which import only NumPy) through a
stand-in package, so ``gpugrad/__init__.py`` does not run in the NumPy or PyTorch worker.
Why separate processes: thread pools are per process. In one process, the OpenMP and BLAS
pools of one library kept spinning (or sleeping at the wrong moment) while another library's
step ran, which made PyTorch's steps several times slower than when it runs alone.

Requests and replies are pickled tuples. The worker's stdout carries only replies (anything a
library prints goes to stderr, which the parent keeps in a temporary file for error messages).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE_ROOT = HERE.parents[1]  # the folder that holds the gpugrad package
STAND_IN = "_gpugrad_bench_worker"  # the name the worker gives this folder's modules
LIBRARIES = ("gpugrad", "numba", "torch", "numpy", "cupy")  # reported by the "loaded" request


class WorkerError(RuntimeError):
    """A request failed in the worker (the message carries its traceback) or the worker died."""


class Worker:
    """The parent's handle on one worker process hosting the peer ``peer``."""

    def __init__(self, peer: str, threads: int):
        from .machine import thread_environment

        self.peer = peer
        self.threads = threads
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115  (closed in close())
        env = {**os.environ, **thread_environment(threads)}
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "worker.py"), peer, str(threads), str(PACKAGE_ROOT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        self.info = self.call("hello")

    def call(self, request: str, **kwargs):
        """Send one request and wait for its reply; raises WorkerError if it failed."""
        try:
            pickle.dump((request, kwargs), self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.proc.stdin.flush()
            status, value = pickle.load(self.proc.stdout)
        except (EOFError, BrokenPipeError, pickle.UnpicklingError) as e:
            raise WorkerError(
                f"the {self.peer} worker died during {request!r} ({type(e).__name__}); its "
                f"stderr ends with:\n{self.stderr_tail()}"
            ) from None
        if status == "error":
            raise WorkerError(f"the {self.peer} worker failed on {request!r}:\n{value}")
        return value

    def stderr_tail(self, chars: int = 3000) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-chars:]

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(WorkerError):
                self.call("exit")
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self._stderr):
            f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------------------- in the worker


class _Host:
    """The worker's side: one peer class, the model being timed, and the request handlers."""

    def __init__(self, peer: str, threads: int):
        from .peers import PEERS

        self.cls = PEERS[peer]
        self.threads = threads
        self.timed = None
        self.device = "cpu"

    def _build(self, config, seed, device="cpu"):
        from .problems import Config, make_problem

        cfg = Config.from_dict(config)
        x, y, layers = make_problem(cfg, seed)
        kwargs = {} if device == "cpu" else {"device": device}
        return self.cls(cfg, x, y, layers, **kwargs)

    def hello(self):
        from .machine import thread_limits

        return {"pid": os.getpid(), "threads": thread_limits(self.threads)}

    def pools(self):
        """The thread pools as they are now (after the peer's library was loaded)."""
        from .machine import thread_limits

        return thread_limits(self.threads)

    def loaded(self):
        return sorted(m for m in LIBRARIES if m in sys.modules)

    def check(self, config, seed=1, device="cpu", steps=2):
        """``steps`` steps from the problem of ``seed``: the last loss and every parameter after
        them (two steps, so that a captured peer's replay is checked, not only its capture)."""
        peer = self._build(config, seed, device)
        for _ in range(steps):
            peer.step()
        return {"loss": peer.loss(), "weights": [w.copy() for w in peer.weights()]}

    def memory(self, config, device="cpu"):
        from .machine import measure_memory

        traced = self.cls.name != "torch"  # tracemalloc sees NumPy's allocations only
        return measure_memory(lambda: self._build(config, 0, device), traced=traced)

    def build(self, config, warmup=2, device="cpu"):
        """Build the timed model and warm it up; returns the seconds of a step (best of 3)."""
        self.timed = None
        self.timed = self._build(config, 0, device)
        self.device = device
        for _ in range(warmup):
            self.timed.step()
        return min(self.time(1) for _ in range(3))

    def time(self, steps):
        """Seconds for ``steps`` steps of the timed model (the device finished its work)."""
        return self.time_cpu(steps)[0]

    def time_cpu(self, steps):
        """(wall seconds, CPU seconds of this process's threads) for ``steps`` steps."""
        peer = self.timed
        c0 = time.process_time()
        t0 = time.perf_counter()
        for _ in range(steps):
            peer.step()
        if self.device != "cpu":
            peer.synchronize()
        return time.perf_counter() - t0, time.process_time() - c0


def _serve(peer: str, threads: int) -> None:
    # Replies go to the original stdout; anything printed from here on goes to stderr.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    host = _Host(peer, threads)
    while True:
        try:
            request, kwargs = pickle.load(requests)
        except EOFError:
            return
        if request == "exit":
            pickle.dump(("ok", None), replies)
            replies.flush()
            os._exit(0)  # nothing left to flush; skips a second or two of library teardown
        try:
            reply = ("ok", getattr(host, request)(**kwargs))
        except BaseException:  # noqa: BLE001  (sent to the parent, which raises it)
            reply = ("error", traceback.format_exc())
        pickle.dump(reply, replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()


if __name__ == "__main__":
    import importlib
    import types

    # This folder holds modules named like top-level ones (machine, problems): keep it off the
    # path, and load them as the stand-in package instead of as gpugrad.benchmark.*.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    peer_name, thread_count, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if peer_name == "gpugrad" and root not in sys.path:
        sys.path.insert(0, root)  # the gpugrad the parent runs, also from a source tree
    package = types.ModuleType(STAND_IN)
    package.__path__ = [str(HERE)]
    sys.modules[STAND_IN] = package
    importlib.import_module(f"{STAND_IN}.worker")._serve(peer_name, thread_count)
