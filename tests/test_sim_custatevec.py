"""The `custatevec` backend. On a GPU with cuquantum-python: values and gradients equal the CPU statevector
backend within 1e-5 (float32) and 1e-10 (float64). Everywhere: it imports without CUDA and fails with the
extra to install, and its engine's bookkeeping (target order, per-sample matrices, adjoint un-application,
dL/dU) is checked against the statevector backend by running it on CPU tensors through a NumPy rendering of
the two cuStateVec calls it makes, as their documentation and NVIDIA's samples define them."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch

from circuit_factory import random_circuit, random_paulis
from hpcq.circuits import encoder_circuit, reuploading_ansatz
from hpcq.errors import ConfigError, MissingDependencyError
from hpcq.sim import custatevec as backend
from hpcq.sim import expectation
from hpcq.sim.observables import parse_observables
from hpcq.sim.statevector import _AdjointExpectation, amplitude_state, block_matrices, compile_circuit


def _have_cuquantum() -> bool:
    try:
        import cuquantum.bindings.custatevec  # noqa: F401
    except ImportError:
        return False
    return True


def _inputs(circuit, batch, dtype, device="cpu", seed=0):
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(circuit.n_weights, dtype=torch.float64, generator=generator).to(dtype)
    features = torch.randn(batch, circuit.n_features, dtype=torch.float64, generator=generator).to(dtype)
    return weights.to(device), features.to(device)


# --- a NumPy rendering of apply_matrix_batched and compute_expectation_batched ------------------------------

def _array(pointer: int, count: int, dtype) -> np.ndarray:
    """A NumPy view of `count` elements at a host address (CPU tensors' data_ptr)."""
    nbytes = count * np.dtype(dtype).itemsize
    return np.frombuffer((ctypes.c_char * nbytes).from_address(pointer), dtype=dtype)


class _NumpyCuStateVec:
    """cuStateVec's batched calls on host memory: row-major matrices, targets[j] = bit j of the matrix index,
    BROADCAST (matrix 0 for all) or MATRIX_INDEXED, expectation values stored [sv, matrix]."""

    class MatrixMapType:
        BROADCAST, MATRIX_INDEXED = 0, 1

    class MatrixLayout:
        ROW = 0

    @staticmethod
    def apply_matrix_batched_get_workspace_size(*_):
        return 0

    compute_expectation_batched_get_workspace_size = apply_matrix_batched_get_workspace_size

    @staticmethod
    def _states(pointer, data_type, n, n_svs, stride):
        return _array(pointer, n_svs * stride, data_type).reshape(n_svs, stride)

    def apply_matrix_batched(self, handle, sv, data_type, n, n_svs, stride, map_type, indices, matrices,
                             matrix_type, layout, adjoint, n_matrices, targets, n_targets, controls, values,
                             n_controls, compute, workspace, workspace_size):
        assert layout == self.MatrixLayout.ROW and n_controls == 0 and n_targets == len(targets)
        states = self._states(sv, data_type, n, n_svs, stride)
        d = 2**n_targets
        mats = _array(matrices, n_matrices * d * d, matrix_type).reshape(n_matrices, d, d)
        axes = [n - 1 - t for t in reversed(targets)]  # MSB of the matrix index first
        for s in range(n_svs):
            matrix = mats[indices[s] if map_type == self.MatrixMapType.MATRIX_INDEXED else 0]
            matrix = matrix.conj().T if adjoint else matrix
            view = np.moveaxis(states[s].reshape([2] * n), axes, range(n_targets)).reshape(d, -1)
            updated = np.moveaxis((matrix @ view).reshape([2] * n), range(n_targets), axes)
            states[s] = updated.reshape(-1)

    def compute_expectation_batched(self, handle, sv, data_type, n, n_svs, stride, out, matrices, matrix_type,
                                    layout, n_matrices, basis, n_basis, compute, workspace, workspace_size):
        states = self._states(sv, data_type, n, n_svs, stride)
        d = 2**n_basis
        mats = _array(matrices, n_matrices * d * d, matrix_type).reshape(n_matrices, d, d)
        values = _array(out, n_svs * n_matrices, np.complex128).reshape(n_svs, n_matrices)
        axes = [n - 1 - b for b in reversed(basis)]
        for s in range(n_svs):
            view = np.moveaxis(states[s].reshape([2] * n), axes, range(n_basis)).reshape(d, -1)
            for m in range(n_matrices):
                values[s, m] = np.vdot(view, mats[m] @ view)


class _Types:
    CUDA_C_32F, CUDA_C_64F = np.complex64, np.complex128
    COMPUTE_32F, COMPUTE_64F = 32, 64


@pytest.fixture
def numpy_custatevec(monkeypatch):
    monkeypatch.setattr(backend, "_library", lambda: (_NumpyCuStateVec(), _Types, _Types))
    monkeypatch.setattr(backend, "_handle", lambda cusv, device: 0)


def _engine_expectation(circuit, weights, features, labels):
    """The backend's forward/adjoint engine on CPU tensors (expectation() itself insists on CUDA)."""
    compiled = compile_circuit(circuit, 5, 6)
    paulis = parse_observables(labels, circuit.n_qubits)
    state_dtype = torch.complex64 if weights.dtype == torch.float32 else torch.complex128
    psi0 = None
    if circuit.amplitude_features is not None:
        psi0 = amplitude_state(features, circuit.amplitude_features, circuit.n_qubits).to(state_dtype)
    matrices = block_matrices(compiled, weights, features, complex_path=True)
    engine = backend.CuStateVecEngine(compiled.blocks, paulis, circuit.n_qubits, state_dtype, weights.device)
    return _AdjointExpectation.apply(engine, features.shape[0], psi0, *matrices)


@pytest.mark.parametrize("case", ["random", "ansatz", "encoder"])
def test_engine_bookkeeping_equals_statevector(numpy_custatevec, case):
    circuit = {"random": random_circuit(7, 60, 5, 3, seed=7), "ansatz": reuploading_ansatz(6, 2, 2, 2),
               "encoder": encoder_circuit(n_features=40, n_qubits=6, layers=1, connectivity=2)}[case]
    labels = random_paulis(circuit.n_qubits, 3, seed=1) + ["I" * (circuit.n_qubits - 1) + "Z"]
    weights, features = _inputs(circuit, 3, torch.float64, seed=2)
    upstream = torch.randn(3, len(labels), dtype=torch.float64)

    def run(fn):
        w, x = weights.clone().requires_grad_(), features.clone().requires_grad_()
        values = fn(w, x)
        return (values.detach(), *torch.autograd.grad((values * upstream).sum(), (w, x)))

    ours = run(lambda w, x: _engine_expectation(circuit, w, x, labels))
    reference = run(lambda w, x: expectation(circuit, w, x, labels))
    for a, b in zip(ours, reference):
        assert (a - b).abs().max() < 1e-10
    assert reference[1].abs().max() > 1e-3 and reference[2].abs().max() > 1e-3


def test_pauli_matrix_bit_order():
    pauli = parse_observables(["XIZ"], 3)[0]  # Z on qubit 0, X on qubit 2
    matrix, basis = backend.pauli_matrix(pauli)
    assert basis == [0, 2]
    assert np.array_equal(matrix, np.kron([[0, 1], [1, 0]], [[1, 0], [0, -1]]))  # qubit 2 is the high bit


@pytest.mark.skipif(_have_cuquantum(), reason="cuquantum-python is installed: the missing-extra error cannot occur")
def test_without_cuquantum_the_error_names_the_gpu_extra():
    circuit = reuploading_ansatz(4, 1, 1, 1)
    weights, features = _inputs(circuit, 1, torch.float32)
    with pytest.raises(MissingDependencyError, match=r"hpcq\[gpu\]"):
        expectation(circuit, weights, features, backend="custatevec")


@pytest.mark.skipif(not _have_cuquantum(), reason="cuquantum-python (the gpu extra) is not installed")
def test_cpu_tensors_are_refused():
    circuit = reuploading_ansatz(4, 1, 1, 1)
    weights, features = _inputs(circuit, 1, torch.float32)
    with pytest.raises(ConfigError, match="move weights and features to 'cuda'"):
        expectation(circuit, weights, features, backend="custatevec")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_custatevec_equals_cpu_statevector_on_a_gpu(dtype, tolerance):
    if not _have_cuquantum():
        pytest.skip("cuquantum-python (the gpu extra) is not installed")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    for circuit in (random_circuit(12, 120, 8, 4, seed=3), reuploading_ansatz(14, 2, 3, 2)):
        labels = random_paulis(circuit.n_qubits, 3, seed=4) + ["I" * (circuit.n_qubits - 1) + "Z"]
        weights, features = _inputs(circuit, 5, dtype, seed=5)
        upstream = torch.randn(5, len(labels), dtype=dtype)

        def run(device, backend_name):
            w = weights.to(device).requires_grad_()
            x = features.to(device).requires_grad_()
            values = expectation(circuit, w, x, labels, backend=backend_name)
            grads = torch.autograd.grad((values * upstream.to(device)).sum(), (w, x))
            return [t.detach().cpu().double() for t in (values, *grads)]

        for a, b in zip(run("cuda", "custatevec"), run("cpu", "statevector")):
            assert (a - b).abs().max() < tolerance * max(1.0, float(b.abs().max()))
