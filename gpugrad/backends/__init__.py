"""Device fast paths: Numba kernels on the CPU (``cpu``, ``cpu_act``, ``cpu_norm``,
``cpu_optim``), CUDA kernel launchers (``cuda``).

Each module registers its implementations on the ops they serve when it is imported
(``@ops.relu.fast("cuda")``); ``gpugrad/__init__.py`` imports this package, so every fast path
is registered before the first op runs. Nothing here imports CuPy at import time. Devices and
array modules live in ``gpugrad.device``.
"""

from . import cpu, cpu_act, cpu_norm, cuda  # noqa: F401  (registration)
