"""Exceptions of the CUDA emulator. Each message names the kernel, where it is defined, what
went wrong and, where there is one, the fix."""

from __future__ import annotations


class EmulatorError(RuntimeError):
    """Base class: something the emulated device rejected or detected."""


class EmulatorUnavailable(EmulatorError):
    """The host compiler (g++) is missing or unusable, so kernels cannot be built."""


class CompileError(EmulatorError):
    """g++ rejected a kernel source; the message carries its diagnostics with file:line."""


class LaunchError(EmulatorError, TypeError):
    """A launch whose configuration or arguments do not fit the kernel (count, width, pointer
    versus value, dtype, grid or block limits)."""


class KernelFault(EmulatorError):
    """A kernel touched memory it does not own: a guard page, a freed buffer, a wild pointer,
    a misaligned vector access, or it wrote into the padding around a buffer."""


class SyncError(EmulatorError):
    """A barrier or warp intrinsic was used in a way CUDA leaves undefined (divergence, a mask
    naming lanes that never arrive, a deadlock)."""


class OrderDependentResult(EmulatorError):
    """Two runs of one launch under different thread/block orders gave different outputs: a
    missing barrier or a race between threads."""


class DeviceTrap(EmulatorError):
    """A kernel called __trap() or failed a device-side assert."""


class NotEmulatedError(NotImplementedError):
    """A CuPy name exists in real CuPy but the emulated device does not implement it."""
