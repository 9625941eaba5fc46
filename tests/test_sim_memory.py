"""Forward+gradient of the paper ansatz at 20 qubits stays within 1.5 GiB of peak resident memory."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import resource, torch
from hpcq.circuits import reuploading_ansatz
from hpcq.sim import expectation
circuit = reuploading_ansatz(20, 2, 3, 2)
weights = torch.rand(circuit.n_weights, requires_grad=True)
features = torch.rand(8, 20, requires_grad=True)
expectation(circuit, weights, features, ["I" * 19 + "Z"]).sum().backward()
assert torch.isfinite(weights.grad).all() and weights.grad.abs().sum() > 0
from hpcq.sim.kernel import kernel_status
print(f"torch threads {torch.get_num_threads()}; kernels: {kernel_status()}")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


@pytest.mark.slow
def test_twenty_qubit_forward_and_gradient_peak_memory():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    *details, peak = done.stdout.strip().splitlines()
    peak_bytes = int(peak)
    print(f"peak RSS {peak_bytes / 2**30:.2f} GiB", *details)
    assert peak_bytes < 1.5 * 2**30, f"peak RSS {peak_bytes / 2**30:.2f} GiB; {details}"
