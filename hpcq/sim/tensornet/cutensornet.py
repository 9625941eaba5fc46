"""The cuTensorNet contractor (`cuquantum.tensornet.contract`, the `gpu` extra) and the choice of contractor.

It contracts the same network along the same path as the torch contractor. It follows the cuquantum-python
25.09-26.9 API (interleaved operands, `OptimizerOptions(path=...)`; differentiable for torch tensors) but has
not yet run on a GPU here: `hpcq selftest --gpu` checks its values and gradients against the CPU.
"""

from __future__ import annotations

import opt_einsum
import torch

from hpcq.errors import MissingDependencyError
from hpcq.sim.tensornet.network import Network
from hpcq.sim.tensornet.paths import Plan

CONTRACTORS = ("auto", "torch", "cutensornet")


def contract_cutensornet(network: Network, plan: Plan, operands: list[torch.Tensor]) -> torch.Tensor:
    """cuTensorNet on the same network and path (interleaved operands, path in numpy.einsum_path format)."""
    try:
        from cuquantum.tensornet import OptimizerOptions, contract
    except ImportError as err:
        raise MissingDependencyError("cuquantum-python-cu12", "gpu",
                                     "the tensornet backend on a GPU") from err
    interleaved: list = []
    for tensor, indices in zip(operands, network.inputs):
        interleaved += [tensor, list(indices)]
    interleaved.append(list(network.output))
    linear = opt_einsum.paths.ssa_to_linear(plan.steps) if plan.steps else []
    return contract(*interleaved, optimize=OptimizerOptions(path=linear))


def choose_contractor(requested: str, accelerator: str, cutensornet: bool) -> tuple[str, str]:
    """("torch" or "cutensornet", why): a named contractor is honoured; "auto" takes cuTensorNet for tensors
    on an NVIDIA GPU when cuquantum-python is installed, never on the CPU or an AMD GPU (ROCm)."""
    if requested != "auto":
        return requested, f"contractor={requested!r} was asked for"
    if accelerator != "nvidia":
        return "torch", ("the tensors are on the CPU" if accelerator == "cpu" else
                         "AMD GPU (ROCm): cuTensorNet runs on NVIDIA GPUs only") + "; torch.einsum contracts"
    if not cutensornet:
        return "torch", ("cuquantum-python is not installed (pip install 'hpcq[gpu]'); "
                         "torch.einsum contracts")
    return "cutensornet", ("NVIDIA GPU with cuquantum-python: cuTensorNet contracts "
                           "(differentiable for torch tensors)")
