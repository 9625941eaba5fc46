"""The `tensornet` backend: <ψ|O|ψ> as one tensor network per observable, reduced to the observable's
light cone.

For wide, shallow circuits that is far cheaper than a 2**n state vector. The pieces, in the order a call
uses them:

* `network`: the light cone of each Pauli string and its network, two-qubit gates split into one-qubit
  pieces joined by a bond of size 2 (a network's width then follows the cut between qubits, not the circuit);
* `paths`: the contraction path (a row sweep, opt_einsum's greedy path, or cotengra's), cached per circuit,
  and checked against free memory before any tensor is built;
* `operands`: the gate tensors from weights and features (PyTorch, so the value is differentiable; a
  per-sample gate carries the batch index, which stays open to the end);
* `contract`: pairwise `torch.einsum` along the path, a sweep checkpointed row by row under autograd;
* `cutensornet`: the same path through cuTensorNet (the `gpu` extra); `contractor="auto"` takes it only on
  NVIDIA GPUs (`choose_contractor`), never on ROCm.
"""

from __future__ import annotations

import torch

from hpcq.circuits.circuit import Circuit
from hpcq.errors import ConfigError
from hpcq.sim.accelerator import accelerator_of, cuquantum_installed
from hpcq.sim.inputs import validate_inputs, wants_gradient
from hpcq.sim.observables import parse_observables
from hpcq.sim.precision import complex_of
from hpcq.sim.tensornet.contract import contract_torch
from hpcq.sim.tensornet.cutensornet import CONTRACTORS, choose_contractor, contract_cutensornet
from hpcq.sim.tensornet.network import Network, build_network, light_cone
from hpcq.sim.tensornet.operands import operand
from hpcq.sim.tensornet.paths import OPTIMIZERS, Plan, cached_plan, check_plan_fits, plan_network


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
        raise ConfigError("the tensornet backend cannot start from amplitude-encoded features (that state is "
                          "not a product state); use backend='statevector' for encoder circuits")
    weights, features, batch = validate_inputs(circuit, weights, features)
    paulis = parse_observables(observables, circuit.n_qubits)
    needs_complex = not circuit.is_real or any(p.y for p in paulis)
    dtype = complex_of(weights.dtype) if needs_complex else weights.dtype
    accelerator = accelerator_of(weights.device)
    installed = accelerator == "nvidia" and cuquantum_installed("cuquantum.tensornet")  # its import is slow
    use_gpu = choose_contractor(contractor, accelerator, installed)[0] == "cutensornet"
    tracking = wants_gradient(weights, features)
    amplitude_bytes = torch.empty((), dtype=dtype).element_size()
    cache: dict = {}
    columns = []
    for pauli in paulis:
        if not pauli.x | pauli.y | pauli.z:  # the identity
            columns.append(torch.ones(batch, dtype=weights.dtype, device=weights.device))
            continue
        network, plan = cached_plan(circuit, pauli, batch, optimize)
        check_plan_fits(plan, amplitude_bytes, weights.device, pauli, circuit.n_qubits)
        operands = [operand(spec, circuit.gates, weights, features, dtype, batch, cache)
                    for spec in network.operands]
        if use_gpu:
            value = contract_cutensornet(network, plan, operands)
        else:
            value = contract_torch(plan, operands, checkpoint_rows=tracking)
        value = value.real if value.is_complex() else value
        columns.append(value.expand(batch) if value.dim() == 0 else value)
    return torch.stack(columns, dim=1).to(weights.dtype)


__all__ = ["expectation", "choose_contractor", "light_cone", "build_network", "plan_network",
           "contract_torch", "Network", "Plan", "CONTRACTORS", "OPTIMIZERS"]
