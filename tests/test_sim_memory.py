"""Forward+gradient of the paper ansatz at 20 qubits adds under 1 GiB to the process's peak resident memory;
large CPU states are zeroed memory of their own (`zero_state`).

Eight float32 states of 2**20 amplitudes are 32 MiB: the bound leaves room for SIMD padding and a few
states per sample, and fails if the gradient kept every intermediate state. Measured as growth over the
peak after importing torch and building the kernels, which differs between machines for reasons that are
not the simulator's.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import resource, torch
from hpcq.circuits import reuploading_ansatz
from hpcq.sim import expectation
from hpcq.sim.kernel import kernel_status
def peak(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
small = reuploading_ansatz(4, 1, 1, 1)
expectation(small, torch.rand(small.n_weights), torch.rand(2, 4), ["IIIZ"])  # builds or loads the kernels
print(f"torch threads {torch.get_num_threads()}; kernels: {kernel_status()}")
print(peak())
circuit = reuploading_ansatz(20, 2, 3, 2)
weights = torch.rand(circuit.n_weights, requires_grad=True)
features = torch.rand(8, 20, requires_grad=True)
expectation(circuit, weights, features, ["I" * 19 + "Z"]).sum().backward()
assert torch.isfinite(weights.grad).all() and weights.grad.abs().sum() > 0
print(peak())
"""


@pytest.mark.slow
def test_twenty_qubit_forward_and_gradient_peak_memory():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    *details, before, after = done.stdout.strip().splitlines()
    growth = int(after) - int(before)
    summary = f"peak RSS {int(before) / 2**30:.2f} GiB after import, {int(after) / 2**30:.2f} GiB after; {details}"
    print(summary)
    assert growth < 2**30, summary


def test_zero_states_are_zero_writable_and_outlive_their_mapping():
    """From HUGE_PAGE_BYTES on, a CPU state is an anonymous mapping its tensor keeps alive."""
    import gc

    import torch

    from hpcq.sim.memory import HUGE_PAGE_BYTES, zero_state

    for shape, dtype in (((HUGE_PAGE_BYTES // 4, 1), torch.float32), ((2**20, 2), torch.complex64),
                         ((8, 1), torch.float64)):
        state = zero_state(shape, dtype, torch.device("cpu"))
        gc.collect()
        assert state.shape == shape and state.dtype == dtype and state.is_contiguous()
        assert not state.any() and state.data_ptr() % 64 == 0
        state[-1] = 2
        assert state.abs().sum() == 2 * shape[1]
