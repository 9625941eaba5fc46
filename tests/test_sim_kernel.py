"""The compiled statevector kernels against the PyTorch path, Qiskit and finite differences, and the fallback
to PyTorch when no kernel can be built."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import pytest
import torch

from circuit_factory import random_circuit, random_paulis
from hpcq.circuits import Circuit, encoder_circuit, reuploading_ansatz
from hpcq.circuits.circuit import REAL_GATES as REAL_GATE_SET
from hpcq.errors import ConfigError
from hpcq.sim import expectation
from hpcq.sim.kernel import KernelUnavailable, build_library, compile_program, library, load_library
from test_sim_statevector import central_differences, qiskit_expectations

REAL_GATES = tuple(sorted(REAL_GATE_SET))

needs_kernels = pytest.mark.skipif(load_library() is None, reason="no C compiler: the compiled kernels cannot be built")


@needs_kernels
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("n_qubits, seed, tile_bytes", [(1, 0, 2**17), (4, 1, 2**17), (7, 2, 256), (10, 3, 2048)])
def test_random_real_circuits_match_qiskit_and_the_torch_path(n_qubits, seed, tile_bytes, dtype, tolerance):
    """Every real gate kind and angle source; small tiles force many stages with gathered (non-prefix) tiles;
    batch 11 pads the last chunk."""
    circuit = random_circuit(n_qubits, 14 * n_qubits, n_weights=5, n_features=3, seed=seed, names=REAL_GATES)
    labels = random_paulis(n_qubits, 4, seed) + ["I" * (n_qubits - 1) + "Z"]
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(circuit.n_weights, dtype=dtype, generator=generator)
    features = torch.randn(11, circuit.n_features, dtype=dtype, generator=generator)
    ours = expectation(circuit, weights, features, labels, kernel="compiled", tile_bytes=tile_bytes)
    torch_path = expectation(circuit, weights, features, labels, kernel="torch")
    reference = qiskit_expectations(circuit, weights.double(), features.double(), labels)
    assert np.abs(ours.double().numpy() - reference).max() < tolerance
    assert torch.allclose(ours, torch_path, atol=tolerance)


def test_tiny_tiles_really_split_the_circuit_into_gathered_stages():
    circuit = reuploading_ansatz(7, 2, 3, 1)
    program = compile_program(circuit, local_qubits=3)
    assert program.n_stages > 10 and (program.stages[:, 0] == 3).all()
    assert len(program.ops) == len(circuit.gates) - circuit.gate_counts()["cnot"]  # each gate once
    stage_qubits = [tuple(program.stage_qubits[offset:offset + k]) for k, offset, _, _ in program.stages]
    assert any(qubits != tuple(range(len(qubits))) for qubits in stage_qubits)  # not only in-place tiles
    # every CNOT+RY block fused into one operation
    assert (program.ops[:, 0] == 2).sum() == circuit.gate_counts()["cnot"] == 2 * 2 * 3 * 7


@needs_kernels
@pytest.mark.parametrize("make_circuit, labels, tile_bytes", [
    (lambda: random_circuit(5, 60, 6, 3, seed=11, names=REAL_GATES), ["IIIIZ", "XXZIZ", "ZZIII", "YIYII"], 256),
    (lambda: reuploading_ansatz(6, 2, 2, 2), ["IIIIIZ", "ZIIIII"], 2**17),
    (lambda: reuploading_ansatz(6, 2, 3, 2), "Z", 512),
    (lambda: encoder_circuit(12, 4, 2, 1), "Z", 2**17),
])
def test_adjoint_gradients_equal_finite_differences(make_circuit, labels, tile_bytes):
    circuit = make_circuit()
    generator = torch.Generator().manual_seed(3)
    weights = torch.randn(circuit.n_weights, dtype=torch.float64, generator=generator, requires_grad=True)
    features = torch.randn(6, circuit.n_features, dtype=torch.float64, generator=generator, requires_grad=True)
    out = expectation(circuit, weights, features, labels, kernel="compiled", tile_bytes=tile_bytes)
    upstream = torch.randn(out.shape, dtype=torch.float64, generator=generator)
    (out * upstream).sum().backward()

    def loss(w, x):
        with torch.no_grad():
            return (expectation(circuit, w, x, labels, kernel="compiled", tile_bytes=tile_bytes) * upstream).sum()

    assert torch.allclose(weights.grad, central_differences(lambda w: loss(w, features), weights), atol=1e-6)
    assert torch.allclose(features.grad, central_differences(lambda x: loss(weights, x), features), atol=1e-6)

    torch_grads = torch.autograd.grad((expectation(circuit, weights, features, labels, kernel="torch") * upstream).sum(),
                                      (weights, features))
    assert torch.allclose(weights.grad, torch_grads[0], atol=1e-10)
    assert torch.allclose(features.grad, torch_grads[1], atol=1e-10)


@needs_kernels
def test_float32_gradients_match_the_float64_torch_path():
    circuit = reuploading_ansatz(9, 2, 3, 2)
    weights = torch.rand(circuit.n_weights, dtype=torch.float64) * 6
    features = torch.rand(13, 9, dtype=torch.float64) * 3
    grads = []
    for dtype, kernel in ((torch.float32, "compiled"), (torch.float64, "torch")):
        w, x = weights.to(dtype).requires_grad_(True), features.to(dtype).requires_grad_(True)
        expectation(circuit, w, x, ["IIIIIIIIZ", "ZZIIIIIII"], kernel=kernel, tile_bytes=4096).sum().backward()
        grads.append((w.grad.double(), x.grad.double()))
    assert torch.allclose(grads[0][0], grads[1][0], atol=2e-5)
    assert torch.allclose(grads[0][1], grads[1][1], atol=2e-5)


@needs_kernels
@pytest.mark.parametrize("batch", [21, 3])  # 3 threads then own whole chunks / share the tiles of one chunk
def test_threads_split_the_work_without_changing_the_answer(batch, monkeypatch):
    from hpcq.sim.kernel import engine

    monkeypatch.setattr(engine, "PARALLEL_MIN_UPDATES", 0)  # even this small job goes to every thread
    circuit = reuploading_ansatz(9, 1, 2, 2)
    weights = torch.randn(circuit.n_weights, dtype=torch.float64, requires_grad=True)
    features = torch.randn(batch, 9, dtype=torch.float64, requires_grad=True)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 3):
            torch.set_num_threads(count)
            out = expectation(circuit, weights, features, ["IIIIIIIIZ", "XIIIIIIZI"], kernel="compiled",
                              tile_bytes=1024)
            results.append((out.detach(), *torch.autograd.grad(out.square().sum(), (weights, features))))
    finally:
        torch.set_num_threads(threads)
    for one, several in zip(*results):
        assert torch.allclose(one, several, atol=1e-12)


@pytest.mark.parametrize("batch, lanes_per_vector, threads, expected", [
    (8, 8, 1, 1),  # one thread, one vector holds the batch: wider rows would only be padding
    (8, 16, 2, 1),  # AVX-512 float32: half a vector of padding is the least possible
    (64, 8, 2, 4),  # two chunks of four vectors, one per thread
    (64, 8, 4, 2),
    (256, 8, 1, 4),
])
def test_rows_are_no_wider_than_the_batch_needs(batch, lanes_per_vector, threads, expected):
    from hpcq.sim.kernel.engine import choose_vectors_per_row

    assert choose_vectors_per_row(batch, lanes_per_vector, threads) == expected


@needs_kernels
def test_auto_takes_the_kernels_only_where_they_apply(monkeypatch):
    from hpcq.sim import kernel

    calls = []
    original = kernel.engine._Run.forward

    def counting(self, *args, **kwargs):
        calls.append(self.program.n_qubits)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(kernel.engine._Run, "forward", counting)
    real = reuploading_ansatz(3, 1, 1, 1)
    expectation(real, torch.zeros(real.n_weights), torch.zeros(2, 3))
    assert calls == [3]
    complex_circuit = Circuit(2).gate("rx", 0, weight=0).gate("cnot", [0, 1])
    expectation(complex_circuit, torch.zeros(1), None, ["IZ"])
    expectation(real, torch.zeros(real.n_weights), torch.zeros(2, 3), kernel="torch")
    assert calls == [3]


def test_compiled_refuses_what_it_cannot_run_and_unknown_kernels_are_named():
    circuit = Circuit(2).gate("rz", 0, weight=0).gate("cnot", [0, 1])
    with pytest.raises(ConfigError, match=r"kernel='compiled' cannot be used: .* gates rz are complex"):
        expectation(circuit, torch.zeros(1), None, ["IZ"], kernel="compiled")
    with pytest.raises(ConfigError, match=r"kernel='fast' is not one of auto, compiled, torch"):
        expectation(circuit, torch.zeros(1), None, ["IZ"], kernel="fast")


def _failing_compiler(directory) -> str:
    script = directory / "broken-cc"
    script.write_text("#!/bin/sh\necho 'broken-cc: error: this compiler always fails' >&2\nexit 1\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_a_failing_build_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCQ_KERNEL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(KernelUnavailable, match="this compiler always fails"):
        build_library(_failing_compiler(tmp_path))
    assert not list((tmp_path / "cache").iterdir())  # nothing half-written is left behind
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(KernelUnavailable, match="no C compiler found"):
        build_library()


def test_without_a_compiler_expectation_falls_back_to_torch_with_one_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCQ_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", _failing_compiler(tmp_path))
    monkeypatch.setattr(library, "_LOADED", {})  # forget this process's build
    circuit = reuploading_ansatz(4, 1, 1, 1)
    weights = torch.randn(circuit.n_weights, dtype=torch.float64)
    features = torch.randn(3, 4, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = expectation(circuit, weights, features, "Z")
        second = expectation(circuit, weights, features, "Z", kernel="compiled")
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "using the PyTorch path" in messages[0] and "always fails" in messages[0]
    reference = expectation(circuit, weights, features, "Z", kernel="torch")
    assert torch.equal(first, reference) and torch.equal(second, reference)


@needs_kernels
@pytest.mark.slow
def test_a_fresh_build_is_cached_once_per_machine(tmp_path):
    """Two processes on an empty cache: both get the kernels, one file is left, no temporary files."""
    script = ("from hpcq.sim.kernel import load_library; import sys; "
              "lib = load_library(); print(lib.path if lib else 'none'); sys.exit(lib is None)")
    env = {**os.environ, "HPCQ_KERNEL_CACHE": str(tmp_path)}
    runs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(2)]
    paths = [run.communicate(timeout=600)[0].strip() for run in runs]
    assert all(run.returncode == 0 for run in runs), paths
    built = sorted(p.name for p in tmp_path.iterdir())
    assert len(built) == 1 and built[0].endswith(".so") and paths[0] == paths[1] == str(tmp_path / built[0])


def test_doctor_says_whether_the_kernels_are_usable(tmp_path, monkeypatch):
    from hpcq.doctor import diagnose

    check = next(c for c in diagnose() if c.name == "statevector compiled kernels")
    assert check.usable == (load_library() is not None)
    monkeypatch.setenv("HPCQ_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", _failing_compiler(tmp_path))
    monkeypatch.setattr(library, "_LOADED", {})
    check = next(c for c in diagnose() if c.name == "statevector compiled kernels")
    assert not check.usable and "always fails" in check.detail and "C compiler" in check.fix


def _dense_reference(state: torch.Tensor, positions: list[int], matrix: torch.Tensor) -> torch.Tensor:
    """M on the index bits `positions` (bit j of M's index on positions[j]) by tensordot over qubit axes."""
    n, k = state.numel().bit_length() - 1, len(positions)
    axes = [n - 1 - positions[j] for j in reversed(range(k))]  # M's index is most significant bit first
    out = torch.tensordot(matrix.reshape([2] * (2 * k)), state.reshape([2] * n), dims=(list(range(k, 2 * k)), axes))
    return out.movedim(list(range(k)), axes).reshape(-1)


def _library_of_width(width: int | str):
    """The native build, or one forced to `width`-byte vectors (AVX2's 32, AVX-512's 64) whatever this CPU has:
    GCC lowers vectors wider than the CPU's to several narrower ones, so both widths' code runs anywhere."""
    if width == "native":
        return load_library()
    built = build_library(flag_sets=(("-O2", f"-DVBYTES={width}"),))
    assert built.vector_bytes == width
    return built


@needs_kernels
@pytest.mark.parametrize("width", ["native", 32, 64])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_dense_blocks_on_any_bits_match_tensordot(dtype, tolerance, width):
    """Blocks on lane bits only, row bits only and mixed, ordered or not, up to the kernel's widest block, at
    both SIMD widths; states of 8 and 16 amplitudes are narrower than a 64-byte float32 vector."""
    from hpcq.sim.kernel.dense import apply_dense

    library = _library_of_width(width)
    generator = torch.Generator().manual_seed(5)
    cases = [(3, [0]), (4, [2, 0, 3]), (6, [5]), (9, [0, 1, 2]), (9, [8, 3, 0, 6]), (12, [11, 0, 5, 2, 9]),
             (12, [7, 1, 10, 4, 3, 6]), (14, [13, 12, 11, 10, 9]), (10, [9, 4]), (11, [3, 7, 10]),
             (13, [12, 3, 8, 5]), (8, [3]), (15, [14, 4, 9, 6, 11])]  # the last five: every row-only width
    for n, positions in cases:
        state = torch.randn(2**n, dtype=torch.float64, generator=generator)
        matrix = torch.randn(2 ** len(positions), 2 ** len(positions), dtype=torch.float64, generator=generator)
        ours = state.to(dtype, copy=True)
        apply_dense(library, ours, positions, matrix)
        expected = _dense_reference(state, positions, matrix)
        assert (ours.double() - expected).abs().max() <= tolerance * expected.abs().max(), (n, positions)


_CNOT = torch.tensor([[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0]], dtype=torch.float64)
_CZ = torch.diag(torch.tensor([1.0, 1.0, 1.0, -1.0], dtype=torch.float64))


def _gates_reference(psi: torch.Tensor, lam: torch.Tensor,
                     ops: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ψ and λ with every operation un-applied in order, dL/dθ per operation) by tensordot: dL/dθ of an R_Y
    is λ_out · (dR/dθ ψ_in), read before it is un-applied."""
    from hpcq.sim.kernel.dense import GATE_CNOT, GATE_CZ, GATE_RY, GATE_RY_CNOT

    grads = []
    for code, a, b, values in ops:
        if code in (GATE_CNOT, GATE_CZ):
            matrix = _CNOT if code == GATE_CNOT else _CZ
            psi, lam = (_dense_reference(v, [a, b], matrix) for v in (psi, lam))
            grads.append(0.0)
            continue
        matrix = torch.tensor(values, dtype=torch.float64).view(2, 2)
        psi_in = _dense_reference(psi, [a], matrix.T.contiguous())
        grad = 0.0
        if code in (GATE_RY, GATE_RY_CNOT):
            c, s = float(matrix[0, 0]), float(matrix[1, 0])
            derivative = 0.5 * torch.tensor([[-s, -c], [c, -s]], dtype=torch.float64)
            grad = float(lam @ _dense_reference(psi_in, [a], derivative))
        psi, lam = psi_in, _dense_reference(lam, [a], matrix.T.contiguous())
        if code == GATE_RY_CNOT:
            psi, lam = (_dense_reference(v, [b, a], _CNOT) for v in (psi, lam))
        grads.append(grad)
    return psi, lam, torch.tensor(grads, dtype=torch.float64)


def _random_gate_ops(n: int, count: int, generator: torch.Generator) -> list:
    """R_Y, H, CNOT, CZ and R_Y then CNOT on random bits (lane bits, row bits, and both for the 2-qubit
    gates)."""
    from hpcq.sim.kernel.dense import GATE_MATRIX, GATE_RY, GATE_RY_CNOT

    hadamard = (2**-0.5, 2**-0.5, 2**-0.5, -(2**-0.5))
    ops = []
    for _ in range(count):
        code = int(torch.randint(5, (1,), generator=generator))
        a, b = (int(v) for v in torch.randperm(n, generator=generator)[:2])
        if code in (GATE_RY, GATE_RY_CNOT):
            half = float(torch.rand(1, generator=generator)) * 3
            c, s = float(np.cos(half)), float(np.sin(half))
            ops.append((code, a, b if code == GATE_RY_CNOT else -1, (c, -s, s, c)))
        elif code == GATE_MATRIX:
            ops.append((GATE_MATRIX, a, -1, hadamard))
        else:
            ops.append((code, a, b, (0.0, 0.0, 0.0, 0.0)))
    return ops


@needs_kernels
@pytest.mark.parametrize("width", ["native", 32, 64])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_gate_adjoint_unapplies_stages_and_reduces_like_torch(dtype, tolerance, width):
    """Stages of gates un-applied in one pass (ψ ← Gᵀψ, λ ← Gᵀλ, dL/dθ per R_Y, in order): gates on lane
    bits, row bits and both, whole small states and tiles of large ones (in place and gathered), at both SIMD
    widths, on 1 and 3 threads (each twice: the reduction order is fixed, so the gradient is too); states of 4
    and 8 amplitudes are narrower than a 64-byte vector (the kernel's scalar path)."""
    from hpcq.sim.kernel.dense import unapply_gates

    library = _library_of_width(width)
    generator = torch.Generator().manual_seed(6)
    for n, count in ((2, 6), (3, 8), (4, 10), (9, 30), (13, 20), (16, 24), (17, 12)):
        psi, lam = torch.randn(2, 2**n, dtype=torch.float64, generator=generator)
        if n == 17:  # gates on the high bits 11-16 only: tiles gathered in runs of a cache line
            ops = [(code, a + 11, b + 11 if b >= 0 else b, m)
                   for code, a, b, m in _random_gate_ops(6, count, generator)]
        else:
            ops = _random_gate_ops(n, count, generator)
        psi_in, lam_in, expected = _gates_reference(psi, lam, ops)
        scale = float(psi.abs().sum() * lam.abs().max())  # the largest a dL/dθ sum can be
        for threads in (1, 3):
            results = []
            for _ in range(2):
                ours_psi, ours_lam = psi.to(dtype, copy=True), lam.to(dtype, copy=True)
                grads = unapply_gates(library, ours_psi, ours_lam, ops, threads=threads)
                results.append(grads)
                for ours, reference in ((ours_psi, psi_in), (ours_lam, lam_in)):
                    assert (ours.double() - reference).abs().max() <= tolerance * reference.abs().max(), \
                        (n, threads)
                assert (grads - expected).abs().max() <= tolerance * scale, (n, threads)
            assert torch.equal(results[0], results[1])


@needs_kernels
def test_dense_kernel_refuses_what_it_cannot_take():
    from hpcq.sim.kernel.dense import GATE_CNOT, GATE_RY, apply_dense, unapply_gates

    library = load_library()
    state = torch.zeros(2**6, dtype=torch.float64)
    identity = (1.0, 0.0, 0.0, 1.0)
    for positions in ([6], [1, 1], list(range(library.dense_max_qubits + 1))):
        with pytest.raises(ValueError, match="refused positions"):
            apply_dense(library, state, positions, torch.eye(2 ** len(positions), dtype=torch.float64))
    for bad in ((GATE_RY, 6, -1, identity), (GATE_CNOT, 1, 1, identity), (7, 0, -1, identity)):
        with pytest.raises(ValueError, match="refused positions"):
            unapply_gates(library, state, state.clone(), [(GATE_RY, 0, -1, identity), bad])
    with pytest.raises(ValueError, match="λ shaped, typed and aligned like ψ"):
        unapply_gates(library, state, state[:32].clone(), [(GATE_RY, 0, -1, identity)])


# A library whose loading alone (its constructor) leaves a marker file: proof that hpcq did or did not load it.
_PLANTED_SOURCE = """
#include <stdio.h>
__attribute__((constructor)) static void planted(void) { FILE *f = fopen("%s", "w"); if (f) fclose(f); }
"""


def _plant_libraries(folder, compiler: str, marker) -> list:
    """A marker-writing `.so` under every name `build_library(compiler)` looks up in `folder`."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    source = folder.parent / "planted.c"
    source.write_text(_PLANTED_SOURCE % marker)
    version = library._compiler_version(compiler)
    source_dir = library.Path(library.__file__).resolve().parent
    planted = []
    for flags in library.FLAG_SETS:
        target = folder / f"{library._build_key(compiler, version, flags, source_dir)}.so"
        subprocess.run([gcc, "-shared", "-fPIC", "-o", str(target), str(source)], check=True)
        planted.append(target)
    return planted


needs_gcc = pytest.mark.skipif(not (shutil.which("gcc") or shutil.which("cc")), reason="no C compiler to plant a .so")


@needs_gcc
def test_a_library_planted_in_the_predictable_fallback_folder_is_never_loaded(tmp_path, monkeypatch):
    """~/.cache unusable (here: under a regular file) → the fallback $TMPDIR/hpcq-kernels-<uid>, which another
    user created first, world-writable, holding a `.so` under the exact names hpcq looks for."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("HPCQ_KERNEL_CACHE", str(blocker / "kernels"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    planted_dir = tmp_path / f"hpcq-kernels-{os.getuid()}"
    planted_dir.mkdir()
    planted_dir.chmod(0o777)
    marker = tmp_path / "planted-code-ran"
    compiler = _failing_compiler(tmp_path)
    _plant_libraries(planted_dir, compiler, marker)

    with pytest.raises(KernelUnavailable, match="this compiler always fails"):
        build_library(compiler)  # refuses the planted files, then builds (and here fails) somewhere private
    assert not marker.exists()
    chosen = library._writable_cache()
    assert chosen != planted_dir and stat.S_IMODE(chosen.stat().st_mode) == 0o700


@needs_gcc
@pytest.mark.parametrize("how", ["writable by others", "another user's"])
def test_an_unsafe_library_in_the_cache_is_refused(tmp_path, monkeypatch, how):
    if how == "another user's" and os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    cache = tmp_path / "cache"
    monkeypatch.setenv("HPCQ_KERNEL_CACHE", str(cache))
    marker = tmp_path / "planted-code-ran"
    compiler = _failing_compiler(tmp_path)
    library._writable_cache()  # creates the cache, 0700
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    for planted in _plant_libraries(cache, compiler, marker):
        planted.chmod(0o777) if how == "writable by others" else os.chown(planted, 54321, 54321)

    with pytest.raises(KernelUnavailable, match=f"not loading .*{'writable by others' if how[0] == 'w' else '54321'}"):
        build_library(compiler)
    assert not marker.exists()


def test_a_foreign_cache_folder_is_not_used(tmp_path, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("giving a folder to another user needs root")
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 54321, 54321)
    monkeypatch.setenv("HPCQ_KERNEL_CACHE", str(foreign))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert library._writable_cache() == tmp_path / f"hpcq-kernels-{os.getuid()}"
