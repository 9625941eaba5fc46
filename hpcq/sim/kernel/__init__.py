"""Compiled C kernels for the statevector backend's real-arithmetic path (gates ry, cnot, cz, x, z, h).

`hpcq.sim.statevector.expectation(..., kernel="auto")` uses them for real circuits on CPU tensors and keeps
the PyTorch path for complex gates, GPU tensors, or when no C compiler is available.
"""

from hpcq.sim.kernel.engine import DEFAULT_TILE_BYTES, compiled_expectation
from hpcq.sim.kernel.library import KernelLibrary, KernelUnavailable, build_library, kernel_status, load_library
from hpcq.sim.kernel.program import SUPPORTED_GATES, compile_program, unsupported_gates

__all__ = [
    "DEFAULT_TILE_BYTES", "KernelLibrary", "KernelUnavailable", "SUPPORTED_GATES", "build_library",
    "compile_program", "compiled_expectation", "kernel_status", "load_library", "unsupported_gates",
]
