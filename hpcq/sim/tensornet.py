"""The `tensornet` backend: <ψ|O|ψ> as one tensor network per observable, reduced to the observable's light cone.

For a Pauli string O only the gates in the backward light cone of O's qubits matter (every other gate meets
its adjoint and cancels, U†U = 1), so the network is |0…0> on the light cone's qubits, its gates, O, the same
gates' adjoints and <0…0|. For wide, shallow circuits that is far cheaper than a 2**n state vector.

Two things keep the network narrow enough to contract at 100 qubits:

* every two-qubit gate is split into its operator-Schmidt pieces (CNOT = Σ_k |k><k| ⊗ X^k, rank 2), so each
  tensor sits on one qubit ("row") and a gate adds one bond of size 2 between its rows instead of a 4-leg
  tensor joining both wires;
* besides opt_einsum's greedy path the planner tries a *row sweep*: absorb one- and two-leg tensors into a
  neighbour, then contract the rows one qubit after another into a boundary tensor, as an MPS-style sweep
  would. Its width is set by the bonds crossing a cut between qubits (for the paper's ring ansatz with
  connectivity 1: two per ring layer, in the ket and in the bra), not by the width of the circuit. The
  planner keeps whichever path costs fewer FLOPs.

Gate tensors are built from weights and features with PyTorch, so the value is differentiable through
autograd; a per-sample (feature) gate carries the batch index, which stays open to the end. Under autograd a
sweep is checkpointed row by row, so the backward pass keeps one boundary per
row rather than every intermediate.

Contraction: pairwise `torch.einsum` along the chosen path (CPU or CUDA tensors), or cuTensorNet
(`cuquantum.tensornet.contract`, the `gpu` extra) given the same path. The cuTensorNet path follows the
cuquantum-python 25.09-26.9 API (interleaved operands, `OptimizerOptions(path=...)`; differentiable for torch
tensors) but has not yet run on a GPU here: `hpcq selftest --gpu` checks its values and gradients against the
CPU. `contractor="auto"` takes it only on NVIDIA GPUs (`choose_contractor`), never on ROCm.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
import opt_einsum
import psutil
import torch

from hpcq.circuits.circuit import Circuit, CircuitCache, Gate
from hpcq.errors import ConfigError, MissingDependencyError, ResourceError
from hpcq.sim.accelerator import accelerator_of, cuquantum_installed
from hpcq.sim.gates import FIXED_GATES, rotation_terms
from hpcq.sim.memory import format_bytes
from hpcq.sim.observables import Pauli, parse_observables
from hpcq.sim.statevector import _complex_of, _validate_inputs

CONTRACTORS = ("auto", "torch", "cutensornet")
OPTIMIZERS = ("auto", "sweep", "greedy", "cotengra")
_PAULI_MATRICES = {"X": FIXED_GATES["x"], "Y": FIXED_GATES["y"], "Z": FIXED_GATES["z"]}
BATCH = -1  # index id of the batch (sample) axis: a hyperedge on every per-sample tensor and the output
#: an intermediate may use at most this fraction of the memory available when the plan is checked
MEMORY_FRACTION = 0.25
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def light_cone(gates: Sequence[Gate], qubits: frozenset[int]) -> list[int]:
    """Indices (in circuit order) of the gates in the backward light cone of `qubits`."""
    active = set(qubits)
    kept = []
    for index in range(len(gates) - 1, -1, -1):
        if active & set(gates[index].qubits):
            active |= set(gates[index].qubits)
            kept.append(index)
    return kept[::-1]


# --- two-qubit gates as sums of products ----------------------------------------------------------------

@lru_cache(maxsize=None)
def _schmidt_pieces(matrix_bytes: bytes, is_complex: bool) -> tuple[np.ndarray, np.ndarray]:
    """Operator-Schmidt split of a 4x4 two-qubit operator M = Σ_k B_k ⊗ A_k (A on the gate's first qubit).

    Returns A, B as [r, 2, 2] (out, in) arrays; r is the operator-Schmidt rank (2 for CNOT, CZ and each
    term of RZZ).
    """
    matrix = np.frombuffer(matrix_bytes, dtype=complex).reshape(4, 4)
    # index = bit(first) + 2·bit(second): M[(o1 o0), (i1 i0)] → R[(o0 i0), (o1 i1)]
    regrouped = matrix.reshape(2, 2, 2, 2).transpose(1, 3, 0, 2).reshape(4, 4)
    u, s, vh = np.linalg.svd(regrouped)
    rank = int((s > 1e-12 * s[0]).sum())
    root = np.sqrt(s[:rank])
    first = (u[:, :rank] * root).T.reshape(rank, 2, 2)
    second = (root[:, None] * vh[:rank]).reshape(rank, 2, 2)
    if not is_complex:
        first, second = first.real.copy(), second.real.copy()
    return first, second


def _pieces_of(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    matrix = np.ascontiguousarray(matrix, dtype=complex)
    return _schmidt_pieces(matrix.tobytes(), bool(np.abs(matrix.imag).max() > 0))


# --- the network ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Network:
    """Tensors of <0|U_lc† O U_lc|0>: index ids per tensor, what each tensor is, and the qubit it sits on.

    Operand specs: ("zero",) | ("pauli", "X"|"Y"|"Z") | ("gate", gate index, adjoint) for one-qubit gates
    | ("piece", gate index, adjoint, side) for side 0/1 of a split two-qubit gate ([out, in, bond] axes).
    """

    inputs: tuple[tuple[int, ...], ...]
    operands: tuple[tuple, ...]
    rows: tuple[int, ...]
    output: tuple[int, ...]
    qubits: tuple[int, ...]


def build_network(gates: Sequence[Gate], pauli: Pauli, n_qubits: int) -> Network:
    """The light-cone network of `pauli`'s expectation, two-qubit gates split into one-qubit pieces."""
    support = pauli.x | pauli.y | pauli.z
    cone = light_cone(gates, frozenset(support))
    qubits = sorted(support | {q for i in cone for q in gates[i].qubits})
    fresh = iter(range(10**9))
    inputs: list[tuple[int, ...]] = []
    operands: list[tuple] = []
    rows: list[int] = []
    wire = {}
    per_sample = False

    def add(indices: tuple[int, ...], spec: tuple, row: int) -> None:
        inputs.append(indices)
        operands.append(spec)
        rows.append(row)

    for q in qubits:  # |0> kets
        wire[q] = next(fresh)
        add((wire[q],), ("zero",), q)

    def add_gate(index: int, adjoint: bool) -> None:
        nonlocal per_sample
        gate = gates[index]
        batch = (BATCH,) if gate.source == "feature" else ()
        per_sample |= bool(batch)
        if len(gate.qubits) == 1:
            (q,) = gate.qubits
            out = next(fresh)
            add((out, wire[q], *batch), ("gate", index, adjoint), q)
            wire[q] = out
            return
        bond = next(fresh)
        for side, q in enumerate(gate.qubits):  # the angle (and so the batch index) sits on side 1
            out = next(fresh)
            add((out, wire[q], bond, *(batch if side else ())), ("piece", index, adjoint, side), q)
            wire[q] = out

    for index in cone:
        add_gate(index, adjoint=False)
    for q in sorted(support):
        label = "X" if q in pauli.x else "Y" if q in pauli.y else "Z"
        out = next(fresh)
        add((out, wire[q]), ("pauli", label), q)
        wire[q] = out
    for index in reversed(cone):
        add_gate(index, adjoint=True)
    for q in qubits:  # <0| bras
        add((wire[q],), ("zero",), q)
    return Network(tuple(inputs), tuple(operands), tuple(rows), (BATCH,) if per_sample else (), tuple(qubits))


# --- contraction paths --------------------------------------------------------------------------------------

class _Graph:
    """Live tensors during a contraction: replays pairwise steps and records their cost and equations."""

    def __init__(self, inputs: Sequence[tuple[int, ...]], output: tuple[int, ...], batch: int):
        self.tensors: dict[int, tuple[int, ...]] = dict(enumerate(inputs))
        self.output = set(output)
        self.batch = batch
        self.holders: dict[int, set[int]] = defaultdict(set)
        for tid, indices in self.tensors.items():
            for i in indices:
                self.holders[i].add(tid)
        self.next_id = len(inputs)
        self.steps: list[tuple[int, int]] = []
        self.equations: list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = []
        self.flops = 0.0
        self.largest = 1.0

    def size(self, indices) -> float:
        return float(math.prod(self.batch if i == BATCH else 2 for i in indices))

    def contract(self, a: int, b: int) -> int:
        left, right = self.tensors.pop(a), self.tensors.pop(b)
        union = tuple(dict.fromkeys(left + right))
        for i in left:
            self.holders[i].discard(a)
        for i in right:
            self.holders[i].discard(b)
        kept = tuple(i for i in union if i in self.output or self.holders[i])
        new = self.next_id
        self.next_id += 1
        self.tensors[new] = kept
        for i in kept:
            self.holders[i].add(new)
        self.steps.append((a, b))
        self.equations.append((left, right, kept))
        self.flops += self.size(union)
        self.largest = max(self.largest, self.size(kept))
        return new

    def neighbours(self, tid: int) -> set[int]:
        return {other for i in self.tensors[tid] if i != BATCH for other in self.holders[i]} - {tid}


@dataclass(frozen=True)
class Plan:
    """A pairwise contraction path (SSA ids), its einsum steps, cost, and the row boundaries of a sweep."""

    method: str
    steps: tuple[tuple[int, int], ...]
    equations: tuple[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]], ...]
    flops: float
    largest: float
    segments: tuple[int, ...]  # sweep: the first step of each row (after the absorption prefix); else ()
    n_inputs: int  # step s makes tensor id n_inputs + s


def _absorb_small(graph: _Graph, rows: dict[int, int], order: dict[int, int]) -> None:
    """Contract every tensor with at most two legs (batch aside) into a neighbour on its own row."""
    pending = sorted(graph.tensors, key=lambda t: order[t])
    while pending:
        tid = pending.pop(0)
        if tid not in graph.tensors or len([i for i in graph.tensors[tid] if i != BATCH]) > 2:
            continue
        near = graph.neighbours(tid)
        if not near:
            continue
        same_row = [t for t in near if rows[t] == rows[tid]] or list(near)
        target = min(same_row, key=lambda t: (len(graph.tensors[t]), order[t]))
        new = graph.contract(tid, target)
        rows[new], order[new] = rows[target], order[target]
        pending.append(new)


def _sweep_plan(network: Network, batch: int) -> Plan:
    graph = _Graph(network.inputs, network.output, batch)
    rows = dict(enumerate(network.rows))
    order = {t: t for t in range(len(network.inputs))}
    _absorb_small(graph, rows, order)
    rank = {q: r for r, q in enumerate(network.qubits)}
    remaining = sorted(graph.tensors, key=lambda t: (rank[rows[t]], order[t]))
    segments = [len(graph.steps)]
    boundary = remaining[0]
    for previous, tid in zip(remaining, remaining[1:]):
        if rows[tid] != rows[previous] and len(graph.steps) > segments[-1]:
            segments.append(len(graph.steps))
        boundary = graph.contract(boundary, tid)
    return Plan("sweep", tuple(graph.steps), tuple(graph.equations), graph.flops, graph.largest,
                tuple(segments), len(network.inputs))


def _ssa_plan(method: str, network: Network, batch: int, ssa_path) -> Plan:
    graph = _Graph(network.inputs, network.output, batch)
    ids = list(range(len(network.inputs)))
    for step in ssa_path:
        if len(step) == 1:
            continue
        current = ids[step[0]]
        for other in step[1:]:
            current = graph.contract(current, ids[other])
        ids.append(current)
    leftovers = sorted(graph.tensors)  # disconnected pieces (e.g. scalars): multiply them in
    while len(leftovers) > 1:
        leftovers = sorted([graph.contract(leftovers[0], leftovers[1])] + leftovers[2:])
    return Plan(method, tuple(graph.steps), tuple(graph.equations), graph.flops, graph.largest, (),
                len(network.inputs))


def _symbolic(network: Network, batch: int):
    letters = {i: opt_einsum.get_symbol(n) for n, i in
               enumerate(sorted({i for indices in network.inputs for i in indices}))}
    inputs = [frozenset(letters[i] for i in indices) for indices in network.inputs]
    sizes = {letters[i]: (batch if i == BATCH else 2) for i in letters}
    return inputs, frozenset(letters[i] for i in network.output), sizes


def _greedy_plan(network: Network, batch: int) -> Plan:
    inputs, output, sizes = _symbolic(network, batch)
    return _ssa_plan("greedy", network, batch, opt_einsum.paths.ssa_greedy_optimize(inputs, output, sizes))


def _cotengra_plan(network: Network, batch: int) -> Plan:
    import cotengra

    inputs, output, sizes = _symbolic(network, batch)
    optimizer = cotengra.HyperOptimizer(methods=["greedy"], max_repeats=16, parallel=False, progbar=False)
    tree = optimizer.search([tuple(sorted(i)) for i in inputs], tuple(sorted(output)), sizes)
    return _ssa_plan("cotengra", network, batch, tree.get_ssa_path())


_PLANNERS = {"sweep": _sweep_plan, "greedy": _greedy_plan, "cotengra": _cotengra_plan}
_PLANS: CircuitCache[tuple[Network, Plan]] = CircuitCache()


def plan_network(network: Network, batch: int, optimize: str = "auto") -> Plan:
    """The contraction plan: `optimize` = "sweep", "greedy", "cotengra", or "auto" (cheaper of sweep/greedy)."""
    if optimize not in OPTIMIZERS:
        raise ConfigError(f"optimize={optimize!r} is unknown; use one of {', '.join(OPTIMIZERS)}")
    if optimize != "auto":
        return _PLANNERS[optimize](network, batch)
    candidates = [_sweep_plan(network, batch), _greedy_plan(network, batch)]
    return min(candidates, key=lambda plan: (plan.flops, plan.largest))


def _cached_plan(circuit: Circuit, pauli: Pauli, batch: int, optimize: str) -> tuple[Network, Plan]:
    def build() -> tuple[Network, Plan]:
        network = build_network(circuit.gates, pauli, circuit.n_qubits)
        return network, plan_network(network, batch, optimize)

    return _PLANS.get(circuit, (pauli, batch, optimize), build)


def _check_plan_fits(plan: Plan, amplitude_bytes: int, device: torch.device, pauli: Pauli, n_qubits: int) -> None:
    largest = plan.largest * amplitude_bytes
    if device.type == "cuda":
        available = torch.cuda.mem_get_info(device)[0]
    else:
        available = psutil.virtual_memory().available
    if largest > MEMORY_FRACTION * available:
        raise ResourceError(
            f"the light-cone network of {pauli.label(n_qubits)!r} needs an intermediate tensor of "
            f"{format_bytes(largest)} (2^{math.log2(plan.largest):.1f} entries, path '{plan.method}'), more than "
            f"{MEMORY_FRACTION:.0%} of the {format_bytes(available)} available on {device}. Fix: a smaller batch, "
            "a shallower or less connected circuit, or backend='statevector'/'distributed' for this width."
        )


# --- operands ------------------------------------------------------------------------------------------------

def _gate_matrix(gate: Gate, weights: torch.Tensor, features: torch.Tensor | None, dtype: torch.dtype,
                 batch: int) -> torch.Tensor:
    """A one-qubit gate's [2, 2] (or [batch, 2, 2] for feature angles) matrix, differentiable."""
    if not gate.is_parametric:
        return _constant(FIXED_GATES[gate.name], dtype, weights.device)
    cos_term, sin_term = (_constant(t, dtype, weights.device) for t in rotation_terms(gate.name))
    cos, sin = _half_angle(gate, weights, features, batch)
    return cos.to(dtype) * cos_term + sin.to(dtype) * sin_term


def _half_angle(gate: Gate, weights, features, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos θ/2, sin θ/2), shaped [batch, 1, 1] for feature angles, else scalars."""
    if gate.source == "weight":
        angle = weights[gate.index]
    elif gate.source == "feature":
        angle = features[:, gate.index].reshape(batch, 1, 1)
    else:
        angle = torch.tensor(gate.value, dtype=weights.dtype, device=weights.device)
    return torch.cos(angle / 2), torch.sin(angle / 2)


def _constant(array: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if not dtype.is_complex:
        array = array.real
    return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype, device=device)


def _piece(gate: Gate, side: int, weights, features, dtype, batch) -> torch.Tensor:
    """Side `side` of a split two-qubit gate as [r, 2, 2] (or [batch, r, 2, 2]); angle factors go on side 1."""
    if not gate.is_parametric:
        pieces = _pieces_of(FIXED_GATES[gate.name])
        return _constant(pieces[side], dtype, weights.device)
    cos_term, sin_term = rotation_terms(gate.name)
    cos_pieces, sin_pieces = _pieces_of(cos_term), _pieces_of(sin_term)
    if side == 0:
        return _constant(np.concatenate([cos_pieces[0], sin_pieces[0]]), dtype, weights.device)
    cos, sin = _half_angle(gate, weights, features, batch)
    if cos.dim():  # [batch, 1, 1] → [batch, 1, 1, 1] against the [r, 2, 2] pieces
        cos, sin = cos.unsqueeze(-1), sin.unsqueeze(-1)
    cos_part = cos.to(dtype) * _constant(cos_pieces[1], dtype, weights.device)
    sin_part = sin.to(dtype) * _constant(sin_pieces[1], dtype, weights.device)
    return torch.cat([cos_part, sin_part], dim=-3)


def _operand(spec: tuple, gates: Sequence[Gate], weights, features, dtype, batch, cache: dict) -> torch.Tensor:
    if spec[0] == "zero":
        return torch.tensor([1, 0], dtype=dtype, device=weights.device)
    if spec[0] == "pauli":
        return _constant(_PAULI_MATRICES[spec[1]], dtype, weights.device)
    if spec in cache:
        return cache[spec]
    gate = gates[spec[1]]
    adjoint = spec[2]
    if spec[0] == "gate":
        tensor = _gate_matrix(gate, weights, features, dtype, batch)  # [(b,) out, in]
    else:
        tensor = _piece(gate, spec[3], weights, features, dtype, batch)  # [(b,) r, out, in]
    if adjoint:
        tensor = tensor.transpose(-1, -2).conj()
    if spec[0] == "piece":
        tensor = tensor.movedim(-3, -1)  # [(b,) out, in, r]
    if gate.source == "feature" and (spec[0] == "gate" or spec[3] == 1):
        tensor = tensor.movedim(0, -1)  # the batch axis goes last, as in the network's index list
    cache[spec] = tensor
    return tensor


# --- contraction -------------------------------------------------------------------------------------------

@lru_cache(maxsize=4096)
def _equation(left: tuple[int, ...], right: tuple[int, ...], out: tuple[int, ...]) -> str:
    """A two-operand einsum equation for index ids (letters assigned per step, so ids may be any ints)."""
    letters: dict[int, str] = {}
    for i in (*left, *right):
        if i not in letters:
            if len(letters) == len(_LETTERS):
                raise ResourceError("a contraction step joins more than 52 indices; the light cone is too wide "
                                    "for the tensor network backend, use backend='statevector'")
            letters[i] = _LETTERS[len(letters)]
    spell = lambda indices: "".join(letters[i] for i in indices)  # noqa: E731
    return f"{spell(left)},{spell(right)}->{spell(out)}"


def _run_steps(tensors: dict[int, torch.Tensor], plan: Plan, first: int, last: int) -> torch.Tensor:
    """Run steps first..last-1; step s makes tensor id `plan.n_inputs + s`. Returns the last result."""
    for s in range(first, last):
        (a, b), (left, right, out) = plan.steps[s], plan.equations[s]
        tensors[plan.n_inputs + s] = torch.einsum(_equation(left, right, out), tensors.pop(a), tensors.pop(b))
    return tensors[plan.n_inputs + last - 1]


def _row(plan: Plan, first: int, last: int, boundary: torch.Tensor, *leaves: torch.Tensor) -> torch.Tensor:
    """Sweep steps first..last-1 (one row): fold the row's tensors into the boundary."""
    tensors = {plan.steps[first][0]: boundary, **{b: leaf for (_, b), leaf in zip(plan.steps[first:last], leaves)}}
    return _run_steps(tensors, plan, first, last)


class _CheckpointedRow(torch.autograd.Function):
    """One row of a sweep that keeps only its inputs and recomputes its intermediates in backward.

    (torch.utils.checkpoint would do the same, but its first call imports torch._dynamo: seconds per process.)
    """

    @staticmethod
    def forward(ctx, plan: Plan, first: int, last: int, *tensors: torch.Tensor) -> torch.Tensor:
        ctx.row = (plan, first, last)
        ctx.save_for_backward(*tensors)
        with torch.no_grad():
            return _row(plan, first, last, *tensors)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        inputs = [t.detach().requires_grad_(t.requires_grad) for t in ctx.saved_tensors]
        with torch.enable_grad():
            result = _row(*ctx.row, *inputs)
        wanted = [t for t in inputs if t.requires_grad]
        grads = iter(torch.autograd.grad(result, wanted, grad_out, allow_unused=True) if wanted else ())
        return (None, None, None, *(next(grads) if t.requires_grad else None for t in inputs))


def contract_torch(plan: Plan, operands: list[torch.Tensor], checkpoint_rows: bool) -> torch.Tensor:
    """Contract along the plan with pairwise `torch.einsum`; a sweep is checkpointed row by row when asked
    (under autograd), so backward keeps one boundary per row instead of every intermediate."""
    tensors = dict(enumerate(operands))
    if not (checkpoint_rows and plan.segments):
        return _run_steps(tensors, plan, 0, len(plan.steps))
    if plan.segments[0]:
        _run_steps(tensors, plan, 0, plan.segments[0])  # the absorption prefix: small tensors only
    bounds = [*plan.segments, len(plan.steps)]
    result = None
    for first, last in zip(bounds[:-1], bounds[1:]):
        boundary = tensors.pop(plan.steps[first][0])
        leaves = [tensors.pop(b) for _, b in plan.steps[first:last]]
        result = _CheckpointedRow.apply(plan, first, last, boundary, *leaves)
        tensors[plan.n_inputs + last - 1] = result
    return result


def _contract_cutensornet(network: Network, plan: Plan, operands: list[torch.Tensor]) -> torch.Tensor:
    """cuTensorNet on the same network and path (interleaved operands, path in numpy.einsum_path format)."""
    try:
        from cuquantum.tensornet import OptimizerOptions, contract
    except ImportError as err:
        raise MissingDependencyError("cuquantum-python-cu12", "gpu", "the tensornet backend on a GPU") from err
    interleaved: list = []
    for tensor, indices in zip(operands, network.inputs):
        interleaved += [tensor, list(indices)]
    interleaved.append(list(network.output))
    linear = opt_einsum.paths.ssa_to_linear(plan.steps) if plan.steps else []
    return contract(*interleaved, optimize=OptimizerOptions(path=linear))


def choose_contractor(requested: str, accelerator: str, cutensornet: bool) -> tuple[str, str]:
    """("torch" or "cutensornet", why): a named contractor is honoured; "auto" takes cuTensorNet for tensors on
    an NVIDIA GPU when cuquantum-python is installed, never on the CPU or an AMD GPU (ROCm)."""
    if requested != "auto":
        return requested, f"contractor={requested!r} was asked for"
    if accelerator != "nvidia":
        return "torch", ("the tensors are on the CPU" if accelerator == "cpu" else
                         "AMD GPU (ROCm): cuTensorNet runs on NVIDIA GPUs only") + "; torch.einsum contracts"
    if not cutensornet:
        return "torch", "cuquantum-python is not installed (pip install 'hpcq[gpu]'); torch.einsum contracts"
    return "cutensornet", "NVIDIA GPU with cuquantum-python: cuTensorNet contracts (differentiable for torch tensors)"


def expectation(
    circuit: Circuit,
    weights: torch.Tensor,
    features: torch.Tensor | None,
    observables="Z",
    *,
    contractor: str = "auto",
    optimize: str = "auto",
) -> torch.Tensor:
    """<O_i> per sample, [batch, n_observables], one light-cone network per observable; differentiable.

    `contractor`: "torch" (pairwise torch.einsum on the tensors' device), "cutensornet" (GPU, `gpu` extra)
    or "auto" (cuTensorNet for CUDA tensors when it is installed, else torch). `optimize`: the path, "auto"
    (the cheaper of the row sweep and opt_einsum's greedy path), "sweep", "greedy" or "cotengra".
    """
    if contractor not in CONTRACTORS:
        raise ConfigError(f"contractor={contractor!r} is unknown; use one of {', '.join(CONTRACTORS)}")
    if circuit.amplitude_features is not None:
        raise ConfigError("the tensornet backend cannot start from amplitude-encoded features (that state is not a "
                          "product state); use backend='statevector' for encoder circuits")
    weights, features, batch = _validate_inputs(circuit, weights, features)
    paulis = parse_observables(observables, circuit.n_qubits)
    needs_complex = not circuit.is_real or any(p.y for p in paulis)
    dtype = _complex_of(weights.dtype) if needs_complex else weights.dtype
    accelerator = accelerator_of(weights.device)
    installed = accelerator == "nvidia" and cuquantum_installed("cuquantum.tensornet")  # its import is slow
    use_gpu = choose_contractor(contractor, accelerator, installed)[0] == "cutensornet"
    tracking = torch.is_grad_enabled() and (weights.requires_grad or (features is not None and features.requires_grad))
    amplitude_bytes = torch.empty((), dtype=dtype).element_size()
    cache: dict = {}
    columns = []
    for pauli in paulis:
        if not pauli.x | pauli.y | pauli.z:  # the identity
            columns.append(torch.ones(batch, dtype=weights.dtype, device=weights.device))
            continue
        network, plan = _cached_plan(circuit, pauli, batch, optimize)
        _check_plan_fits(plan, amplitude_bytes, weights.device, pauli, circuit.n_qubits)
        operands = [_operand(s, circuit.gates, weights, features, dtype, batch, cache) for s in network.operands]
        if use_gpu:
            value = _contract_cutensornet(network, plan, operands)
        else:
            value = contract_torch(plan, operands, checkpoint_rows=tracking)
        value = value.real if value.is_complex() else value
        columns.append(value.expand(batch) if value.dim() == 0 else value)
    return torch.stack(columns, dim=1).to(weights.dtype)


__all__ = ["expectation", "choose_contractor", "light_cone", "build_network", "plan_network", "contract_torch", "Network", "Plan"]
