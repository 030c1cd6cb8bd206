"""CUDA-graph capture of a whole training step: ``gg.cuda.graph(step_fn, *example_inputs)``.

A small model's step on a GPU is mostly launch overhead: each of its few dozen kernels runs for
microseconds while Python and the driver take longer to queue it. Capturing the step once with
CuPy's stream capture and replaying the graph queues all of them in one call.

How it works: the inputs are copied into static GPU buffers; ``step_fn`` runs a few times on a
side stream to warm up (kernels compiled, cuBLAS handles made, optimizer state created), then
once more under capture. Everything the step allocates comes from a private memory pool that
lives as long as the graph, so replays write to the same addresses and nothing else can be
given that memory. ``captured(*inputs)`` copies new inputs into the static buffers, launches
the graph and returns the static outputs (overwritten by the next replay).

What a replay repeats is the GPU work alone, exactly as captured: Python-side effects of
``step_fn`` (a learning-rate schedule, Adam's step count, ``p.grad`` assignments) happen at
capture time only. Parameters updated in place on the GPU (as every gpugrad optimizer does)
change on every replay. Anything that waits for the GPU inside the step (``.item()``,
``.numpy()``, printing a tensor, a Python ``if`` on a GPU value) cannot be captured and is
refused with a RuntimeError naming the cause. The optimizers upload their hyperparameter rows
only when they change, so an SGD step captures; Adam's rows carry the step count for its bias
corrections, which changes every step, so an Adam step does not.
"""

from __future__ import annotations

import contextlib

from . import device

_capturing = False


def is_capturing() -> bool:
    """True while ``graph`` is capturing a step (host-side checks must then be skipped)."""
    return _capturing


def _cupy():
    reason = device._probe_cuda()
    if reason is not None:
        raise RuntimeError(f"cuda.graph: CUDA graphs need a GPU and CuPy: {reason}")
    import cupy

    return cupy


def _flatten(out):
    from .tensor import Tensor

    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, tuple | list):
        return [t for t in out if isinstance(t, Tensor)]
    return []


class CapturedStep:
    """A captured step: call it with inputs shaped like the examples to replay the graph."""

    def __init__(self, step_fn, example_inputs, warmup: int = 3):
        from .tensor import Tensor

        cp = _cupy()
        if not example_inputs:
            raise ValueError("cuda.graph: pass at least one example input tensor")
        for i, t in enumerate(example_inputs):
            if not isinstance(t, Tensor) or t.device == "cpu":
                raise TypeError(
                    f"cuda.graph: example input {i} must be a tensor on a CUDA device, got "
                    f"{type(t).__name__} on {getattr(t, 'device', '?')}"
                )
        self._cp = cp
        self.pool = cp.cuda.MemoryPool()  # private: replays own every block captured in it
        self.stream = cp.cuda.Stream(non_blocking=True)
        with cp.cuda.using_allocator(self.pool.malloc), self.stream:
            self.inputs = [Tensor._wrap(t.data.copy(), t.device) for t in example_inputs]
            for _ in range(max(1, warmup)):
                step_fn(*self.inputs)
            self.stream.synchronize()
            global _capturing
            _capturing = True
            try:
                self.stream.begin_capture()
                self.outputs = step_fn(*self.inputs)
            except Exception as e:
                # the capture is invalidated (or never began): end it, report the first error
                with contextlib.suppress(Exception):
                    self.stream.end_capture()
                if "capture" in str(e).lower() or isinstance(e, cp.cuda.runtime.CUDARuntimeError):
                    raise RuntimeError(
                        "cuda.graph: the step cannot be captured: it waits for the GPU inside "
                        "the step (.item(), .numpy(), printing a tensor, a Python `if` on a GPU "
                        f"value) or allocates outside CuPy's pool. Original error: {e}"
                    ) from e
                raise
            finally:
                _capturing = False
            self.graph = self.stream.end_capture()
        self.graph.upload(self.stream)
        self._keep = _flatten(self.outputs)  # outputs stay alive: they are the static results

    def __call__(self, *inputs):
        if len(inputs) != len(self.inputs):
            raise TypeError(f"cuda.graph: expected {len(self.inputs)} inputs, got {len(inputs)}")
        for i, (src, dst) in enumerate(zip(inputs, self.inputs, strict=True)):
            data = getattr(src, "data", src)
            if tuple(data.shape) != tuple(dst.data.shape) or data.dtype != dst.data.dtype:
                raise ValueError(
                    f"cuda.graph: input {i} is {tuple(data.shape)} {data.dtype}; the graph was "
                    f"captured for {tuple(dst.data.shape)} {dst.data.dtype}"
                )
            with self.stream:  # host data is uploaded, device data copied, both in order
                dst.data[...] = self._cp.asarray(data)
        self.graph.launch(self.stream)
        return self.outputs

    def synchronize(self) -> None:
        self.stream.synchronize()


def graph(step_fn, *example_inputs, warmup: int = 3) -> CapturedStep:
    """Capture ``step_fn(*example_inputs)`` (forward, loss, backward, optimizer) as a CUDA graph.

    Returns a callable that replays it on new inputs of the same shapes and dtypes. Needs a GPU;
    raises RuntimeError without one, or when the step synchronizes with the host.
    """
    return CapturedStep(step_fn, example_inputs, warmup)
