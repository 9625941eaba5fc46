"""The `custatevec` backend. On a GPU with cuquantum-python: values and gradients equal the CPU statevector
backend within 1e-5 (float32) and 1e-10 (float64). Everywhere: it imports without CUDA and fails with the
extra to install.

Conventions tests (`test_conventions_*`): the engine's bookkeeping (target order, per-sample matrices, adjoint
un-application, dL/dU) is checked against the statevector backend by running it on CPU tensors through a
NumPy rendering of the two cuStateVec calls it makes, as their documentation and NVIDIA's samples define
them. The rendering is a stand-in for the library, so these tests check hpcq's conventions, not cuStateVec.
Where cuquantum-python is installed (it imports without a GPU), every call is also bound against the
installed bindings' argument list, its C-typed arguments must be ints, and the enums are the bindings' own;
the distributed swap loop runs on the bindings' real `SVSwapParameters` (`test_bindings_*`)."""

from __future__ import annotations

import ctypes
import inspect
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from circuit_factory import random_circuit, random_paulis
from hpcq.circuits import encoder_circuit, reuploading_ansatz
from hpcq.errors import ConfigError, MissingDependencyError
from hpcq.sim import custatevec as backend
from hpcq.sim import expectation
from hpcq.sim.adjoint import AdjointExpectation
from hpcq.sim.compile import block_matrices, compile_circuit
from hpcq.sim.inputs import amplitude_state
from hpcq.sim.observables import parse_observables


def _bindings():
    """(custatevec, cudaDataType, ComputeType) from the installed cuquantum-python, or None."""
    try:
        from cuquantum import ComputeType, cudaDataType
        from cuquantum.bindings import custatevec
    except ImportError:
        return None
    return custatevec, cudaDataType, ComputeType


BINDINGS = _bindings()
needs_bindings = pytest.mark.skipif(BINDINGS is None, reason="cuquantum-python (the gpu extra) is not installed")


def _inputs(circuit, batch, dtype, device="cpu", seed=0):
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(circuit.n_weights, dtype=torch.float64, generator=generator).to(dtype)
    features = torch.randn(batch, circuit.n_features, dtype=torch.float64, generator=generator).to(dtype)
    return weights.to(device), features.to(device)


# --- the installed bindings' argument lists ------------------------------------------------------------------

#: the 26.9 argument lists, used only where cuquantum-python is not installed
_DOCUMENTED = {
    "apply_matrix_batched_get_workspace_size": "handle sv_data_type n_index_bits n_svs sv_stride map_type "
    "matrix_indices matrices matrix_data_type layout adjoint n_matrices n_targets n_controls compute_type",
    "apply_matrix_batched": "handle batched_sv sv_data_type n_index_bits n_svs sv_stride map_type matrix_indices "
    "matrices matrix_data_type layout adjoint n_matrices targets n_targets controls control_bit_values n_controls "
    "compute_type extra_workspace extra_workspace_size_in_bytes",
    "compute_expectation_batched_get_workspace_size": "handle sv_data_type n_index_bits n_svs sv_stride matrices "
    "matrix_data_type layout n_matrices n_basis_bits compute_type",
    "compute_expectation_batched": "handle batched_sv sv_data_type n_index_bits n_svs sv_stride expectation_values "
    "matrices matrix_data_type layout n_matrices basis_bits n_basis_bits compute_type extra_workspace "
    "extra_workspace_size_in_bytes",
    "dist_index_bit_swap_scheduler_get_parameters": "handle scheduler swap_batch_index org_sub_sv_index",
    "sv_swap_worker_set_parameters": "handle worker params peer",
    "sv_swap_worker_execute": "handle sv_swap_worker begin end",
}


def _bind(name: str, args: tuple) -> dict:
    """`args` by parameter name, as the installed binding `name` would take them (TypeError if it would not);
    arguments it declares with a C scalar type (intptr_t, int, uint32_t, ...) must be Python ints."""
    if BINDINGS is None:
        names = _DOCUMENTED[name].split()
        assert len(args) == len(names), f"{name} takes {len(names)} arguments, got {len(args)}"
        return dict(zip(names, args))
    function = getattr(BINDINGS[0], name)
    bound = inspect.signature(function).bind(*args).arguments
    declared = function.__doc__.splitlines()[0]
    for c_type, parameter in re.findall(r"(\w+_t|int|size_t) (\w+)", declared):
        assert isinstance(bound[parameter], int), f"{name}: {parameter} ({c_type}) got {bound[parameter]!r}"
    return dict(bound)


# --- a NumPy rendering of apply_matrix_batched and compute_expectation_batched ------------------------------

def _array(pointer: int, count: int, dtype) -> np.ndarray:
    """A NumPy view of `count` elements at a host address (CPU tensors' data_ptr)."""
    nbytes = count * np.dtype(dtype).itemsize
    return np.frombuffer((ctypes.c_char * nbytes).from_address(pointer), dtype=dtype)


if BINDINGS is not None:
    _ENUMS = SimpleNamespace(MatrixLayout=BINDINGS[0].MatrixLayout, MatrixMapType=BINDINGS[0].MatrixMapType)
    _TYPES = SimpleNamespace(CUDA_C_32F=BINDINGS[1].CUDA_C_32F, CUDA_C_64F=BINDINGS[1].CUDA_C_64F,
                             COMPUTE_32F=BINDINGS[2].COMPUTE_32F, COMPUTE_64F=BINDINGS[2].COMPUTE_64F)
else:  # the library's values (cuquantum-python 26.9)
    _ENUMS = SimpleNamespace(MatrixLayout=SimpleNamespace(COL=0, ROW=1),
                             MatrixMapType=SimpleNamespace(BROADCAST=0, MATRIX_INDEXED=1))
    _TYPES = SimpleNamespace(CUDA_C_32F=4, CUDA_C_64F=5, COMPUTE_32F=4, COMPUTE_64F=16)
_NUMPY_OF = {int(_TYPES.CUDA_C_32F): np.complex64, int(_TYPES.CUDA_C_64F): np.complex128}


class _NumpyCuStateVec:
    """cuStateVec's batched calls on host memory: row-major matrices, targets[j] = bit j of the matrix index,
    BROADCAST (matrix 0 for all) or MATRIX_INDEXED, expectation values stored [sv, matrix]."""

    MatrixLayout = _ENUMS.MatrixLayout
    MatrixMapType = _ENUMS.MatrixMapType

    @staticmethod
    def apply_matrix_batched_get_workspace_size(*args):
        _bind("apply_matrix_batched_get_workspace_size", args)
        return 0

    @staticmethod
    def compute_expectation_batched_get_workspace_size(*args):
        _bind("compute_expectation_batched_get_workspace_size", args)
        return 0

    @staticmethod
    def _states(a: dict) -> np.ndarray:
        dtype = _NUMPY_OF[int(a["sv_data_type"])]
        return _array(a["batched_sv"], a["n_svs"] * a["sv_stride"], dtype).reshape(a["n_svs"], a["sv_stride"])

    @staticmethod
    def _matrices(a: dict, d: int) -> np.ndarray:
        return _array(a["matrices"], a["n_matrices"] * d * d, _NUMPY_OF[int(a["matrix_data_type"])]).reshape(-1, d, d)

    def apply_matrix_batched(self, *args):
        a = _bind("apply_matrix_batched", args)
        assert a["layout"] == self.MatrixLayout.ROW and a["n_controls"] == 0 and a["n_targets"] == len(a["targets"])
        n, targets = a["n_index_bits"], a["targets"]
        states, d = self._states(a), 2 ** a["n_targets"]
        mats = self._matrices(a, d)
        axes = [n - 1 - t for t in reversed(targets)]  # MSB of the matrix index first
        for s in range(a["n_svs"]):
            indexed = a["map_type"] == self.MatrixMapType.MATRIX_INDEXED
            matrix = mats[a["matrix_indices"][s] if indexed else 0]
            matrix = matrix.conj().T if a["adjoint"] else matrix
            view = np.moveaxis(states[s].reshape([2] * n), axes, range(len(targets))).reshape(d, -1)
            updated = np.moveaxis((matrix @ view).reshape([2] * n), range(len(targets)), axes)
            states[s] = updated.reshape(-1)

    def compute_expectation_batched(self, *args):
        a = _bind("compute_expectation_batched", args)
        assert a["layout"] == self.MatrixLayout.ROW
        n, basis = a["n_index_bits"], a["basis_bits"]
        states, d = self._states(a), 2 ** a["n_basis_bits"]
        mats = self._matrices(a, d)
        values = _array(a["expectation_values"], a["n_svs"] * a["n_matrices"], np.complex128)
        values = values.reshape(a["n_svs"], a["n_matrices"])
        axes = [n - 1 - b for b in reversed(basis)]
        for s in range(a["n_svs"]):
            view = np.moveaxis(states[s].reshape([2] * n), axes, range(len(basis))).reshape(d, -1)
            for m in range(a["n_matrices"]):
                values[s, m] = np.vdot(view, mats[m] @ view)


@pytest.fixture
def numpy_custatevec(monkeypatch):
    monkeypatch.setattr(backend, "_library", lambda: (_NumpyCuStateVec(), _TYPES, _TYPES))
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
    return AdjointExpectation.apply(engine, features.shape[0], psi0, *matrices)


@pytest.mark.parametrize("case", ["random", "ansatz", "encoder"])
def test_conventions_engine_bookkeeping_equals_statevector(numpy_custatevec, case):
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


@pytest.mark.skipif(BINDINGS is not None, reason="cuquantum-python is installed: the missing-extra error cannot occur")
def test_without_cuquantum_the_error_names_the_gpu_extra():
    circuit = reuploading_ansatz(4, 1, 1, 1)
    weights, features = _inputs(circuit, 1, torch.float32)
    with pytest.raises(MissingDependencyError, match=r"hpcq\[gpu\]"):
        expectation(circuit, weights, features, backend="custatevec")


@needs_bindings
def test_cpu_tensors_are_refused():
    circuit = reuploading_ansatz(4, 1, 1, 1)
    weights, features = _inputs(circuit, 1, torch.float32)
    with pytest.raises(ConfigError, match="move weights and features to 'cuda'"):
        expectation(circuit, weights, features, backend="custatevec")


def _library_calls(module) -> list[tuple[str, int, set[str], int]]:
    """(function, positional count, keywords, line) of every call hpcq makes on the cuStateVec bindings
    (`cusv.f(...)`, `self.cusv.f(...)`, `custatevec.f(...)`) without * or ** arguments."""
    import ast

    calls = []
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
        starred = any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords)
        if name in ("cusv", "custatevec") and not starred:
            calls.append((node.func.attr, len(node.args), {k.arg for k in node.keywords}, node.lineno))
    return calls


@needs_bindings
def test_bindings_accept_every_call_hpcq_makes():
    """Names and argument counts of the calls that need a GPU to run, against the installed bindings."""
    from hpcq.sim.distributed import custatevec_swap

    calls = _library_calls(custatevec_swap) + _library_calls(backend)
    assert len(calls) >= 15  # the swap worker's and scheduler's calls, handles, streams
    for name, positional, keywords, line in calls:
        function = getattr(BINDINGS[0], name, None)
        assert function is not None, f"line {line}: cuquantum.bindings.custatevec has no {name}"
        inspect.signature(function).bind(*range(positional), **dict.fromkeys(keywords))


@needs_bindings
def test_bindings_enums_are_the_ones_hpcq_passes():
    cusv, data_type, compute_type = BINDINGS
    assert (cusv.CommunicatorType.OPENMPI, cusv.CommunicatorType.MPICH) == (1, 2)
    assert cusv.MatrixLayout.ROW == 1 and cusv.MatrixMapType.MATRIX_INDEXED == 1  # the stand-in once had ROW = 0
    assert {data_type.CUDA_C_32F, data_type.CUDA_C_64F, compute_type.COMPUTE_32F, compute_type.COMPUTE_64F}


@needs_bindings
def test_bindings_swap_batches_read_sv_swap_parameters():
    """The distributed swap loop on the bindings' real `SVSwapParameters`, whose fields are one-element arrays:
    the peer and transfer size reach the worker as Python ints (int() of the array raised TypeError)."""
    from hpcq.sim.distributed.custatevec_swap import run_swap_batches

    cusv = BINDINGS[0]
    planned = {0: (1, 4096), 1: (3, 512)}  # swap batch -> (peer sub state vector, elements to send)
    worker_calls: list = []

    class Scheduled:
        """The scheduler's answers as cuStateVec would fill them; the worker's calls recorded."""

        @staticmethod
        def dist_index_bit_swap_scheduler_get_parameters(*args):
            a = _bind("dist_index_bit_swap_scheduler_get_parameters", args)
            parameters = cusv.SVSwapParameters()
            parameters.swap_batch_index, parameters.org_sub_sv_index = a["swap_batch_index"], a["org_sub_sv_index"]
            parameters.dst_sub_sv_index, parameters.transfer_size = planned[a["swap_batch_index"]]
            return parameters

        @staticmethod
        def sv_swap_worker_set_parameters(*args):
            a = _bind("sv_swap_worker_set_parameters", args)
            assert isinstance(a["params"], cusv.SVSwapParameters) and int(a["params"].org_sub_sv_index[0]) == 2
            worker_calls.append(("peer", a["peer"]))

        @staticmethod
        def sv_swap_worker_execute(*args):
            a = _bind("sv_swap_worker_execute", args)
            worker_calls.append(("execute", a["begin"], a["end"]))

    assert run_swap_batches(Scheduled(), 11, 12, 13, batches=2, rank=2) == 4096 + 512
    assert worker_calls == [("peer", 1), ("execute", 0, 4096), ("peer", 3), ("execute", 0, 512)]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_custatevec_equals_cpu_statevector_on_a_gpu(dtype, tolerance):
    if BINDINGS is None:
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
