"""The distributed backend under real `mpiexec` (2, 4, 8 ranks) against the statevector backend, its placement
plan, its one-rank degenerate case, and the memory plan that stops oversized runs before allocating."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from circuit_factory import random_circuit, random_paulis
from hpcq.circuits import reuploading_ansatz
from hpcq.errors import ConfigError, ResourceError
from hpcq.sim import expectation
from hpcq.sim.distributed import CommStats
from hpcq.sim.distributed.memory_plan import plan_memory, require_fit
from hpcq.sim.distributed.placement import Apply, Exchange, Measure, plan_placement
from hpcq.sim.kernel import load_library
from hpcq.sim.kernel.dense import unapply_gates
from hpcq.sim.observables import parse_observables

TESTS = Path(__file__).parent

# Every rank runs the same cases; rank 0 computes the statevector reference and broadcasts it.
MPI_SCRIPT = r"""
import json, sys
import torch
from mpi4py import MPI
sys.path.insert(0, sys.argv[1])
from circuit_factory import random_circuit, random_paulis
from hpcq.circuits import encoder_circuit, reuploading_ansatz
from hpcq.sim import expectation
from hpcq.sim.distributed import CommStats, engine

# count the blocks the compiled adjoint un-applies in place (the rest go through torch)
unapplied = [0]
compiled_unapply = engine.unapply_gates
def counted_unapply(*args, **kwargs):
    unapplied[0] += 1
    return compiled_unapply(*args, **kwargs)
engine.unapply_gates = counted_unapply
comm = MPI.COMM_WORLD
n_global = comm.size.bit_length() - 1
device = sys.argv[2] if len(sys.argv) > 2 else "cpu"  # "cuda": one GPU per rank (shared when fewer)
exchange = sys.argv[3] if len(sys.argv) > 3 else "auto"
if device == "cuda":
    torch.cuda.set_device(comm.rank % torch.cuda.device_count())
cases = {
    "random10": (random_circuit(10, 60, 6, 3, seed=10), 3),
    "random14-real": (random_circuit(14, 80, 6, 2, seed=19, names=("ry", "h", "x", "z", "cnot", "cz")), 2),
    "ansatz20": (reuploading_ansatz(20, 1, 1, 1), 1),
    "encoder12": (encoder_circuit(n_features=3000, n_qubits=12, layers=1, connectivity=2), 2),
}
for name, (circuit, batch) in cases.items():
    if exchange == "custatevec":
        batch = 1 << (batch.bit_length() - 1)  # cuStateVec's sub-SV index bits include the batch
    n = circuit.n_qubits
    top = [q for q in range(n - n_global, n)]
    assert any(set(g.qubits) & set(top) for g in circuit.gates), "the case must act on global qubits"
    labels = random_paulis(n, 3, seed=n) + ["I" * (n - 1) + "Z", "Z" + "I" * (n - 1)]
    generator = torch.Generator().manual_seed(n)
    weights = torch.randn(circuit.n_weights, dtype=torch.float64, generator=generator).requires_grad_()
    features = torch.randn(batch, circuit.n_features, dtype=torch.float64, generator=generator).requires_grad_()
    upstream = torch.randn(batch, len(labels), dtype=torch.float64, generator=generator)

    def run(backend, on="cpu", **options):
        w, x = weights.detach().to(on).requires_grad_(), features.detach().to(on).requires_grad_()
        values = expectation(circuit, w, x, labels, backend=backend, **options)
        grads = torch.autograd.grad((values * upstream.to(on)).sum(), (w, x))
        return values.detach().cpu(), grads[0].cpu(), grads[1].cpu()

    stats = CommStats()
    unapplied[0] = 0
    ours = run("distributed", on=device, stats=stats, exchange=exchange)
    in_place = unapplied[0]
    reference = comm.bcast(run("statevector") if comm.rank == 0 else None, root=0)
    errors = [float((a - b).abs().max()) for a, b in zip(ours, reference)]
    print(json.dumps({"rank": comm.rank, "case": name, "errors": errors, "exchanges": stats.exchanges,
                      "bytes": stats.bytes_sent, "scale": float(reference[1].abs().max()),
                      "in_place": in_place}), flush=True)
"""


def mpiexec(ranks: int) -> list[str]:
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    return ["mpiexec", "-n", str(ranks), "--oversubscribe", *root]


def mpi_env() -> dict[str, str]:
    """Open MPI 5 as root in a container: allow root, and keep ranks from busy-polling shared cores."""
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_mpi_yield_when_idle="1", OMP_NUM_THREADS="1")
    env.pop("OMPI_COMM_WORLD_SIZE", None)
    return env


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 4, 8])
def test_distributed_equals_statevector_under_mpiexec(ranks):
    done = subprocess.run([*mpiexec(ranks), sys.executable, "-c", MPI_SCRIPT, str(TESTS)], capture_output=True,
                          text=True, timeout=300, env=mpi_env())
    assert done.returncode == 0, done.stderr[-4000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert sorted({r["rank"] for r in rows}) == list(range(ranks))
    assert len(rows) == 4 * ranks
    for row in rows:
        value_error, weight_error, feature_error = row["errors"]
        assert value_error < 1e-10, row  # float64: equal but for the order of the sums
        assert weight_error < 1e-10 and feature_error < 1e-10, row
        assert row["scale"] > 1e-3  # the gradients compared are not trivially zero
        assert row["exchanges"] > 0 and row["bytes"] > 0, row  # global qubits really moved between ranks
        if row["case"] == "ansatz20" and load_library() is not None:  # one real sample: the compiled adjoint
            assert row["in_place"] > 0, row


@pytest.mark.mpi
@pytest.mark.gpu
@pytest.mark.parametrize("exchange", ["mpi", "custatevec"])
def test_distributed_on_gpus_equals_statevector(exchange):
    """CUDA tensors on 2 ranks: swaps staged through host memory (mpi) or by cuStateVec's swap worker."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    if exchange == "custatevec":
        pytest.importorskip("cuquantum.bindings.custatevec", reason="cuquantum-python (the gpu extra) is not installed")
        query = "from hpcq.sim.distributed.exchange import mpi_cuda_aware; a, how = mpi_cuda_aware(); print(a, how)"
        answer = subprocess.run([sys.executable, "-c", query], capture_output=True, text=True, timeout=120).stdout
        if not answer.startswith("True"):
            pytest.skip(f"cuStateVec's swap worker needs CUDA-aware MPI, and this MPI is not: {answer.strip()}")
    done = subprocess.run([*mpiexec(2), sys.executable, "-c", MPI_SCRIPT, str(TESTS), "cuda", exchange],
                          capture_output=True, text=True, timeout=300, env=mpi_env())
    assert done.returncode == 0, done.stderr[-4000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 8
    for row in rows:
        assert max(row["errors"]) < 1e-6 and row["exchanges"] > 0, row


def test_one_rank_without_mpi_equals_statevector():
    circuit = random_circuit(9, 80, 5, 3, seed=3)
    labels = random_paulis(9, 4, seed=3)
    weights = torch.randn(circuit.n_weights, dtype=torch.float64, requires_grad=True)
    features = torch.randn(2, circuit.n_features, dtype=torch.float64)
    ours = expectation(circuit, weights, features, labels, backend="distributed")
    reference = expectation(circuit, weights, features, labels)
    assert torch.allclose(ours, reference, atol=1e-12)
    ours_grad, = torch.autograd.grad(ours.sum(), weights)
    reference_grad, = torch.autograd.grad(reference.sum(), weights)
    assert torch.allclose(ours_grad, reference_grad, atol=1e-12)


def test_blocks_wider_than_the_dense_kernel_are_unapplied_gate_by_gate():
    """A fused block wider than the dense kernel runs in torch in the forward, which may move the layout; the
    backward un-applies its gates in place in whatever layout the forward left."""
    library = load_library()
    if library is None:
        pytest.skip("the compiled kernels cannot be built here (no C compiler)")
    circuit = reuploading_ansatz(10, 2, 3, 1)
    generator = torch.Generator().manual_seed(11)
    weights = torch.randn(circuit.n_weights, dtype=torch.float64, generator=generator)
    features = torch.randn(1, circuit.n_features, dtype=torch.float64, generator=generator)
    results = []
    for options in ({"backend": "distributed", "max_fused_qubits": library.dense_max_qubits + 2},
                    {"backend": "statevector", "kernel": "torch"}):
        w, x = weights.clone().requires_grad_(), features.clone().requires_grad_()
        expectation(circuit, w, x, "Z", **options).sum().backward()
        results.append(torch.cat([w.grad, x.grad[0]]))
    assert (results[0] - results[1]).abs().max() < 1e-10


@pytest.mark.parametrize("width", ["native", 32, 64])
def test_in_place_gradients_equal_statevector_and_finite_differences(width, monkeypatch):
    """One rank with the compiled kernels built for `width`-byte vectors: the backward un-applies the gates of
    every shared block in place (`unapply_gates`). Float64 values and gradients against the statevector
    backend's torch path and finite differences, from 2 and 3 qubits (narrower than a 64-byte vector: the
    kernel's scalar path) up; batch 2 mixes shared blocks in place with per-sample ones in torch."""
    from hpcq.sim.distributed import engine
    from hpcq.sim.kernel import library as kernel_library
    from test_sim_kernel import REAL_GATES, _library_of_width
    from test_sim_statevector import central_differences

    if load_library() is None:
        pytest.skip("the compiled kernels cannot be built here (no C compiler)")
    library = _library_of_width(width)
    monkeypatch.setitem(kernel_library._LOADED, "library", library)  # what load_library() returns from now on
    unapplied = []
    monkeypatch.setattr(engine, "unapply_gates",
                        lambda *args, **kwargs: unapplied.append(1) or unapply_gates(*args, **kwargs))
    cases = [(reuploading_ansatz(2, 1, 1, 1), 1, ["IZ", "ZI", "XZ"]),
             (reuploading_ansatz(3, 2, 2, 1), 1, "Z"),
             (random_circuit(9, 70, 6, 3, seed=7, names=REAL_GATES), 1, random_paulis(9, 3, seed=7)),
             (random_circuit(8, 50, 5, 2, seed=8, names=REAL_GATES), 2, ["IIIIIIIZ", "XIIZIIII"]),
             # more bits than one stage tile: gates reordered across stages (`plan_gate_stages`)
             (reuploading_ansatz(15, 2, 3, 1), 1, ["I" * 14 + "Z", "Z" + "I" * 14])]
    generator = torch.Generator().manual_seed(9)
    for circuit, batch, labels in cases:
        weights = torch.randn(circuit.n_weights, dtype=torch.float64, generator=generator)
        features = torch.randn(batch, circuit.n_features, dtype=torch.float64, generator=generator)
        upstream = torch.randn(batch, len(parse_observables(labels, circuit.n_qubits)), dtype=torch.float64,
                               generator=generator)

        def loss(w, x, **options):
            return (expectation(circuit, w, x, labels, **options) * upstream).sum()

        results = []
        for options in ({"backend": "distributed"}, {"backend": "statevector", "kernel": "torch"}):
            w, x = weights.clone().requires_grad_(), features.clone().requires_grad_()
            value = loss(w, x, **options)
            results.append((value.detach(), *torch.autograd.grad(value, (w, x))))
        for ours, reference in zip(*results):
            assert (ours - reference).abs().max() < 1e-10, circuit.n_qubits
        if circuit.n_qubits <= 3:
            with torch.no_grad():
                assert torch.allclose(results[0][1], central_differences(
                    lambda w: loss(w, features, backend="distributed"), weights), atol=1e-6)
                assert torch.allclose(results[0][2], central_differences(
                    lambda x: loss(weights, x, backend="distributed"), features), atol=1e-6)
    assert unapplied


def test_placement_makes_every_block_local_and_batches_swaps():
    ansatz = reuploading_ansatz(12, 2, 3, 2)
    from hpcq.sim.compile import compile_circuit

    blocks = [b.qubits for b in compile_circuit(ansatz, 4).blocks]
    n_global = 3
    plan = plan_placement(blocks, 12, n_global, [(0, 11)])
    held = list(plan.initial_global)
    for step in plan.steps:
        if isinstance(step, Exchange):
            assert not set(step.local_qubits) & set(held)
            for position, qubit in zip(step.positions, step.local_qubits):
                held[position] = qubit
        else:
            qubits = blocks[step.block] if isinstance(step, Apply) else (0, 11)
            assert not set(qubits) & set(held), (step, held)
    assert isinstance(plan.steps[-1], Measure)
    touching = sum(1 for i, b in enumerate(blocks) if i and set(b) - set(blocks[i - 1]))
    assert 0 < len(plan.exchanges) < touching
    assert max(e.bits for e in plan.exchanges) > 1  # several global qubits travel in one exchange


def test_memory_plan_counts_state_workspace_and_swap_buffer():
    plan = plan_memory(30, ranks=4, ranks_per_node=2, amplitude_bytes=8, gradient=True, runtime_bytes=0)
    local = 8 * 2**28
    assert (plan.state_bytes, plan.workspace_bytes, plan.swap_bytes) == (2 * local, local, 64 * 2**20)
    assert plan.per_node_bytes == 2 * plan.per_rank_bytes and plan.nodes == 2


def test_in_place_blocks_plan_no_workspace_on_one_rank_only():
    one, several = (plan_memory(32, ranks=r, amplitude_bytes=4, in_place=True, runtime_bytes=0) for r in (1, 2))
    assert (one.state_bytes, one.workspace_bytes) == (4 * 2**32, 0)
    assert several.workspace_bytes == 4 * 2**31  # index-bit swaps still permute into a spare slice
    from hpcq.sim.distributed import fused_qubits_for, runs_in_place

    circuit = reuploading_ansatz(8, 1, 1, 1)
    cpu = torch.device("cpu")
    assert runs_in_place(circuit, cpu) == (load_library() is not None)  # forward and backward alike
    assert not runs_in_place(circuit, cpu, kernel="torch")
    assert not runs_in_place(circuit, cpu, batch=2)  # per-sample feature blocks run in torch
    assert fused_qubits_for(circuit, cpu, kernel="torch") == 5
    if load_library() is not None:
        with pytest.raises(ConfigError, match="needs a power-of-two batch, got 3"):
            expectation(circuit, torch.zeros(circuit.n_weights), torch.zeros(3, circuit.n_features),
                        backend="distributed", kernel="compiled")


def test_diagonal_observables_summed_in_chunks_equal_the_whole_sum(monkeypatch):
    from hpcq.sim import measure
    from hpcq.sim.observables import parse_observables

    n, generator = 11, torch.Generator().manual_seed(4)
    paulis = parse_observables(["Z" + "I" * 10, "I" * 10 + "Z", "ZIZIIIIIIIZ", "XIIIIIIIIIZ", "IIIIZZIIIII"], n)
    for batch, dtype in ((1, torch.float64), (3, torch.complex128)):
        state = torch.randn(2**n, batch, dtype=dtype, generator=generator)
        layout = tuple(torch.randperm(n, generator=generator).tolist())
        whole = measure.expectations(state, layout, paulis, dtype.is_complex)
        monkeypatch.setattr(measure, "CHUNK_AMPLITUDES", 64)
        chunked = measure.expectations(state, layout, paulis, dtype.is_complex)
        monkeypatch.undo()
        assert torch.allclose(chunked, whole, rtol=1e-12, atol=1e-9)


def test_too_large_run_names_the_rank_and_node_count_that_fits():
    plan = plan_memory(34, ranks=1, ranks_per_node=4, amplitude_bytes=16)
    with pytest.raises(ResourceError, match=r"at least 16 ranks on 4 node\(s\) at 4 ranks per node"):
        require_fit(plan, memory_per_rank=64 * 2**30, memory_per_node=None)
    # node memory is shared: on one 24 GiB node no rank count fits 30 qubits, more nodes do
    plan = plan_memory(30, ranks=2, ranks_per_node=2, amplitude_bytes=16)
    with pytest.raises(ResourceError, match=r"at least 4 ranks on 2 node\(s\)"):
        require_fit(plan, memory_per_rank=None, memory_per_node=24 * 2**30)


def test_distributed_stops_before_allocating_an_oversized_state():
    circuit = reuploading_ansatz(36, 1, 1, 1)
    weights = torch.zeros(circuit.n_weights, dtype=torch.float64)
    features = torch.zeros(1, circuit.n_features, dtype=torch.float64)
    with pytest.raises(ResourceError, match=r"36-qubit state .* Fix: use at least \d+ ranks on \d+ node"):
        expectation(circuit, weights, features, backend="distributed")


def test_distributed_rejects_bad_rank_counts_and_options():
    circuit = reuploading_ansatz(4, 1, 1, 1)
    weights = torch.zeros(circuit.n_weights)
    with pytest.raises(ConfigError, match="exchange='nccl' is unknown"):
        from hpcq.sim.distributed import _swapper

        _swapper("nccl", None, torch.device("cpu"), 1, CommStats())
    with pytest.raises(ConfigError, match="ranks=3 must be a power of two"):
        plan_memory(10, ranks=3)
    with pytest.raises(ConfigError, match="use at most 8 ranks"):
        plan_memory(4, ranks=16, min_local_qubits=1)
    assert expectation(circuit, weights, torch.zeros(1, 4), backend="distributed").shape == (1, 4)


@pytest.mark.parametrize("compiled", [False, True], ids=["torch", "compiled"])
def test_slice_applier_equals_the_permuting_path(compiled):
    """Blocks applied in place (adjacent axes, or any bits with the compiled kernel) or after a ring-layout
    permutation give the same state as the statevector-style path (every block moved to the leading axes),
    for real and complex circuits."""
    from hpcq.sim.distributed.engine import apply_block
    from hpcq.sim.distributed.local import SliceApplier, ring_layout
    from hpcq.sim.kernel import load_library
    from hpcq.sim.layout import canonical_layout, permute_state
    from hpcq.sim.compile import block_matrices, compile_circuit

    assert ring_layout(range(8), (2, 3)) == (2, 3, 4, 5, 6, 7, 0, 1)
    assert ring_layout(range(8), (7, 0, 1)) == (7, 0, 1, 2, 3, 4, 5, 6)
    assert ring_layout(range(8), (1, 2, 6)) == (6, 1, 2, 3, 4, 5, 7, 0)  # the longest gap follows qubit 2
    seen = []
    for circuit in (reuploading_ansatz(11, 2, 2, 1), random_circuit(11, 60, 6, 0, seed=12)):
        compiled_circuit = compile_circuit(circuit, 3)
        weights = torch.randn(circuit.n_weights, dtype=torch.float64)
        features = torch.randn(1, circuit.n_features, dtype=torch.float64) if circuit.n_features else None
        complex_path = not compiled_circuit.is_real
        matrices = block_matrices(compiled_circuit, weights, features, complex_path)
        dtype = torch.complex128 if complex_path else torch.float64
        start = torch.randn(2**11, 1, dtype=dtype)
        library = load_library() if compiled else None
        if compiled and library is None:
            pytest.skip("the compiled kernels cannot be built here (no C compiler)")
        applier, kinds = SliceApplier(compiled_circuit.blocks, library), set()
        ours, layout = start.clone(), tuple(range(11))
        ours = permute_state(ours, canonical_layout(11), layout)
        reference, reference_layout = start.clone(), canonical_layout(11)
        for index, (block, matrix) in enumerate(zip(compiled_circuit.blocks, matrices)):
            previous = layout
            ours, layout = applier.apply(ours, layout, index, matrix)
            kinds.add("in place" if layout == previous else "permuted")
            reference, reference_layout = apply_block(reference, reference_layout, block, matrix, complex_path)
        seen.append(kinds)
        difference = permute_state(ours, layout, canonical_layout(11)) - permute_state(
            reference, reference_layout, canonical_layout(11))
        assert difference.abs().max() < 1e-12
    if compiled:  # the real circuit never moves; the complex one keeps the torch path
        assert seen[0] == {"in place"} and "permuted" in seen[1]
    else:
        assert seen[0] == {"in place", "permuted"} and "permuted" in seen[1]  # both paths ran
