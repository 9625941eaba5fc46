"""The `tensornet` backend: <ψ|O|ψ> as one tensor network per observable, reduced to the observable's light cone.

For a Pauli string O, only gates in the backward light cone of O's qubits matter (every other gate meets its
adjoint and cancels, U†U = 1), so the network is |0…0> on the light cone's qubits, its gates, O, the same
gates' adjoints and <0…0|. For wide, shallow circuits that is far smaller than a 2**n state vector: the cost
follows the light cone and the contraction's treewidth, not the width. Gate tensors are built from weights and
features with PyTorch, so the result is differentiable through autograd; a per-sample gate carries the batch
index, which stays open to the end.

Contraction: opt_einsum with PyTorch on CPU (path found once per network shape and cached, cotengra's
optimiser when `optimize="cotengra"`), cuTensorNet (`cuquantum.tensornet.contract`, the `gpu` extra) on CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
import opt_einsum
import torch

from hpcq.circuits.circuit import Circuit, Gate
from hpcq.errors import ConfigError, MissingDependencyError
from hpcq.sim.gates import FIXED_GATES, rotation_terms
from hpcq.sim.observables import Pauli, parse_observables
from hpcq.sim.statevector import _complex_of, _validate_inputs

CONTRACTORS = ("auto", "torch", "cutensornet")
_PAULI_MATRICES = {"X": FIXED_GATES["x"], "Y": FIXED_GATES["y"], "Z": FIXED_GATES["z"]}


def light_cone(gates: Sequence[Gate], qubits: frozenset[int]) -> list[int]:
    """Indices (in circuit order) of the gates in the backward light cone of `qubits`."""
    active = set(qubits)
    kept = []
    for index in range(len(gates) - 1, -1, -1):
        if active & set(gates[index].qubits):
            active |= set(gates[index].qubits)
            kept.append(index)
    return kept[::-1]


@dataclass(frozen=True)
class Network:
    """An einsum over the operands listed in `operands` (what each tensor is), output `b` (the batch)."""

    expression: str
    operands: tuple[tuple, ...]  # ("zero",) | ("gate", gate index, adjoint) | ("pauli", char)
    qubits: tuple[int, ...]


def build_network(gates: Sequence[Gate], pauli: Pauli, n_qubits: int) -> Network:
    """<0|U_lc† O U_lc|0> for the light cone U_lc of `pauli`, as einsum terms (one index per wire segment)."""
    support = pauli.x | pauli.y | pauli.z
    cone = light_cone(gates, frozenset(support))
    qubits = sorted(support | {q for i in cone for q in gates[i].qubits})
    counter = iter(range(10**9))
    symbol = lambda: opt_einsum.get_symbol(next(counter) + 1)  # noqa: E731  (symbol 0 is the batch 'b')
    batch = opt_einsum.get_symbol(0)
    terms: list[str] = []
    operands: list[tuple] = []
    wire = {}
    for q in qubits:  # |0> kets
        wire[q] = symbol()
        terms.append(wire[q])
        operands.append(("zero",))

    def add_gate(index: int, adjoint: bool) -> None:
        gate = gates[index]
        inputs = [wire[q] for q in gate.qubits]
        outputs = [symbol() for _ in gate.qubits]
        for q, s in zip(gate.qubits, outputs):
            wire[q] = s
        # the gate tensor's axes: outputs then inputs, each most significant qubit (last in the list) first
        indices = "".join(reversed(outputs)) + "".join(reversed(inputs))
        terms.append(indices + (batch if gate.source == "feature" else ""))
        operands.append(("gate", index, adjoint))

    for index in cone:
        add_gate(index, adjoint=False)
    for q in sorted(support):
        label = "X" if q in pauli.x else "Y" if q in pauli.y else "Z"
        new = symbol()
        terms.append(new + wire[q])
        operands.append(("pauli", label))
        wire[q] = new
    for index in reversed(cone):
        add_gate(index, adjoint=True)
    for q in qubits:  # <0| bras
        terms.append(wire[q])
        operands.append(("zero",))
    return Network(",".join(terms) + "->" + batch, tuple(operands), tuple(qubits))


def _gate_matrix(gate: Gate, weights: torch.Tensor, features: torch.Tensor | None, dtype: torch.dtype,
                 batch: int) -> torch.Tensor:
    """The gate's [2**k, 2**k] (or [batch, 2**k, 2**k] for feature angles) matrix, differentiable."""
    if not gate.is_parametric:
        return torch.as_tensor(FIXED_GATES[gate.name], dtype=dtype, device=weights.device)
    cos_term, sin_term = (torch.as_tensor(t, dtype=dtype, device=weights.device) for t in rotation_terms(gate.name))
    if gate.source == "weight":
        angle = weights[gate.index]
    elif gate.source == "feature":
        angle = features[:, gate.index].reshape(batch, 1, 1)
    else:
        angle = torch.tensor(gate.value, dtype=weights.dtype, device=weights.device)
    return torch.cos(angle / 2).to(dtype) * cos_term + torch.sin(angle / 2).to(dtype) * sin_term


def _operand(spec: tuple, gates: Sequence[Gate], weights, features, dtype, batch, cache: dict) -> torch.Tensor:
    if spec[0] == "zero":
        return torch.tensor([1, 0], dtype=dtype, device=weights.device)
    if spec[0] == "pauli":
        return torch.as_tensor(_PAULI_MATRICES[spec[1]], dtype=dtype, device=weights.device)
    _, index, adjoint = spec
    key = (index, adjoint)
    if key not in cache:
        gate = gates[index]
        matrix = _gate_matrix(gate, weights, features, dtype, batch)
        if adjoint:
            matrix = matrix.transpose(-1, -2).conj()
        k = len(gate.qubits)
        tensor = matrix.reshape(*matrix.shape[:-2], *([2] * (2 * k)))
        # a per-sample gate's batch axis goes last, as in the einsum term
        cache[key] = tensor.movedim(0, -1) if tensor.dim() > 2 * k else tensor
    return cache[key]


@lru_cache(maxsize=256)
def _contraction(expression: str, shapes: tuple[tuple[int, ...], ...], optimize: str):
    """A reusable contraction for one network shape: the path search runs once."""
    if optimize == "cotengra":
        import cotengra

        optimizer = cotengra.HyperOptimizer(max_repeats=32, methods=["greedy", "kahypar"], progbar=False)
        return opt_einsum.contract_expression(expression, *shapes, optimize=optimizer)
    return opt_einsum.contract_expression(expression, *shapes, optimize=optimize)


def _contract_cutensornet(expression: str, operands: list[torch.Tensor]) -> torch.Tensor:
    try:
        from cuquantum.tensornet import contract
    except ImportError as err:
        raise MissingDependencyError("cuquantum-python-cu12", "gpu", "the tensornet backend on a GPU") from err
    return contract(expression, *operands)


def expectation(
    circuit: Circuit,
    weights: torch.Tensor,
    features: torch.Tensor | None,
    observables="Z",
    *,
    contractor: str = "auto",
    optimize: str = "greedy",
) -> torch.Tensor:
    """<O_i> per sample, [batch, n_observables], one light-cone network per observable; differentiable.

    `contractor`: "torch" (opt_einsum with PyTorch), "cutensornet" (GPU) or "auto" (cuTensorNet for CUDA
    tensors, else torch). `optimize`: an opt_einsum path optimiser ("greedy", "optimal", ...) or "cotengra".
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
    use_gpu = contractor == "cutensornet" or (contractor == "auto" and weights.device.type == "cuda")
    cache: dict = {}
    columns = []
    for pauli in paulis:
        network = build_network(circuit.gates, pauli, circuit.n_qubits)
        operands = [_operand(s, circuit.gates, weights, features, dtype, batch, cache) for s in network.operands]
        expression = network.expression
        if not any(s[0] == "gate" and circuit.gates[s[1]].source == "feature" for s in network.operands):
            expression = expression[:-1]  # no per-sample gate in this light cone: a scalar, same for every sample
        if use_gpu:
            value = _contract_cutensornet(expression, operands)
        else:
            value = _contraction(expression, tuple(tuple(o.shape) for o in operands), optimize)(*operands,
                                                                                               backend="torch")
        columns.append(value.real.expand(batch) if value.dim() == 0 else value.real)
    return torch.stack(columns, dim=1).to(weights.dtype)


__all__ = ["expectation", "light_cone", "build_network"]
