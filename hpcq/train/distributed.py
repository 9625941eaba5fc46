"""torch.distributed for causal-LM training: start the process group from whatever launched the ranks,
wrap the model for data parallelism (DDP) or sharding (FSDP), and save/restore training state that does not
depend on the number of ranks.

Which launcher started the ranks, and rank 0's address, is `hpcq.runtime.detect_launch`; without
MASTER_ADDR/MASTER_PORT or a Slurm step, rank 0's host name and a free port are broadcast over MPI.
Backends: NCCL on GPUs, gloo on CPUs. One rank needs no process group at all.
"""

from __future__ import annotations

import inspect
import signal
import socket
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hpcq.errors import ConfigError
from hpcq.runtime import Launch, detect_launch

STRATEGIES = ("auto", "none", "ddp", "fsdp")


def _mpi_rendezvous(launch: Launch) -> tuple[str, int]:
    """Rank 0's host name and a free port, broadcast over MPI."""
    try:
        from mpi4py import MPI
    except ImportError:
        from hpcq.errors import MissingDependencyError

        raise MissingDependencyError("mpi4py", "mpi", "finding rank 0 under an MPI launcher without "
                                     "MASTER_ADDR/MASTER_PORT") from None
    found = None
    if launch.rank == 0:
        with socket.socket() as probe:
            probe.bind(("", 0))
            found = (socket.gethostname(), probe.getsockname()[1])
    return MPI.COMM_WORLD.bcast(found, root=0)


def choose_device(name: str, local_rank: int) -> torch.device:
    """`auto`: this rank's GPU (local rank modulo the visible GPUs) when there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={name!r} but no CUDA device is visible here; use auto or cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


@dataclass
class DistContext:
    """This rank's place in the run: rank, world size, device, backend, and whether we own the group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None
    launcher: str
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Elementwise sum of a few numbers over the ranks (float64)."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device if self.backend == "nccl" else "cpu")
        torch.distributed.all_reduce(tensor)
        return tensor.tolist()

    def any(self, flag: bool) -> bool:
        """Whether any rank's flag is set (every rank gets the same answer)."""
        return self.sum([float(flag)])[0] > 0

    def close(self) -> None:
        """Destroy the process group if `init_distributed` created it."""
        if self.owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
            self.owns_group = False


def init_distributed(device: str = "auto", backend: str = "auto", launch: Launch | None = None) -> DistContext:
    """Start (or join an already started) process group for this launch; one rank starts none."""
    launch = launch or detect_launch()
    chosen = choose_device(device, launch.local_rank)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if launch.world_size == 1:
        return DistContext(0, 1, 0, chosen, None, launch.launcher)
    backend = ("nccl" if chosen.type == "cuda" else "gloo") if backend == "auto" else backend
    if backend == "nccl" and chosen.type != "cuda":
        raise ConfigError("distributed.backend=nccl needs GPUs; use gloo (or auto) on CPUs")
    dist = torch.distributed
    if dist.is_initialized():
        if (dist.get_rank(), dist.get_world_size()) != (launch.rank, launch.world_size):
            raise ConfigError(f"a process group of rank {dist.get_rank()}/{dist.get_world_size()} exists, but "
                              f"the launcher says {launch.rank}/{launch.world_size}")
        return DistContext(launch.rank, launch.world_size, launch.local_rank, chosen, dist.get_backend(),
                           launch.launcher)
    if launch.launcher == "torchrun":  # its agent hosts the store: join it as torchrun intends
        dist.init_process_group(backend, init_method="env://", rank=launch.rank, world_size=launch.world_size,
                                device_id=chosen if chosen.type == "cuda" else None)
        return DistContext(launch.rank, launch.world_size, launch.local_rank, chosen, backend, launch.launcher,
                           True)
    addr, port = launch.master_addr, launch.master_port
    if addr is None or port is None:
        if launch.launcher != "mpi":
            raise ConfigError(f"{launch.launcher} started {launch.world_size} ranks without MASTER_ADDR and "
                              f"MASTER_PORT; export both (rank 0's host and a free port)")
        addr, port = _mpi_rendezvous(launch)
    dist.init_process_group(backend, init_method=f"tcp://{addr}:{port}", rank=launch.rank,
                            world_size=launch.world_size, device_id=chosen if chosen.type == "cuda" else None)
    return DistContext(launch.rank, launch.world_size, launch.local_rank, chosen, backend, launch.launcher, True)


# ----------------------------------------------------------------------------------------------- wrapping


def resolve_strategy(strategy: str, world_size: int) -> str:
    """`auto` (and anything on one rank) → ddp for several ranks, none for one."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"distributed.strategy={strategy!r} is not one of {', '.join(STRATEGIES)}")
    if world_size == 1:
        return "none"
    return "ddp" if strategy == "auto" else strategy


def hf_model(model: nn.Module) -> nn.Module:
    """The outermost Hugging Face `PreTrainedModel` inside `model` (under QuanTA's or peft's wrapper): the
    module whose `generate` runs and whose `_no_split_modules` names the transformer blocks."""
    from transformers import PreTrainedModel

    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            return module
    raise ConfigError(f"{type(model).__name__} contains no Hugging Face PreTrainedModel to shard")


def wrap_model(model: nn.Module, ctx: DistContext, strategy: str, compute_dtype: torch.dtype) -> nn.Module:
    """The module to train with: `model` itself (none), DDP around it, or `model` with every transformer
    block and then the whole Hugging Face model sharded by FSDP2's `fully_shard` (in place).

    FSDP gathers each block's parameters in `compute_dtype` and reduces gradients in float32, so the fp32
    trainable weights are the sharded master copy.
    """
    if strategy == "none":
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        # Every rank builds identical adapters from the run seed, so buffers (QuanTA's θ0) need no broadcast
        # in each forward (torch >= 2.13 names the option forward_sync_buffers).
        known = inspect.signature(DistributedDataParallel).parameters
        no_sync = {"forward_sync_buffers" if "forward_sync_buffers" in known else "broadcast_buffers": False}
        return DistributedDataParallel(model, device_ids=ids, **no_sync)
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    inner = hf_model(model)
    blocks = set(getattr(inner, "_no_split_modules", None) or ())
    if not blocks:
        raise ConfigError(f"{type(inner).__name__} does not name its transformer blocks (_no_split_modules); "
                          f"FSDP cannot shard it block by block, use distributed.strategy=ddp")
    policy = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
    for module in list(inner.modules()):
        if type(module).__name__ in blocks:
            fully_shard(module, mp_policy=policy)
    fully_shard(inner, mp_policy=policy)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (FSDP2 shards in place and needs no unwrapping)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


# ------------------------------------------------------------------------------------------ training state


def gather_training_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Full (unsharded) trainable weights, persistent buffers (QuanTA's θ0) and optimizer state on the CPU,
    keyed by parameter name: the same whatever the number of ranks or the strategy. Every rank must call
    it; with FSDP only rank 0 gets the tensors."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
    return get_state_dict(model, optimizer, options=options)


def restore_training_state(model: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict,
                           optimizer_state: dict) -> None:
    """Load what `gather_training_state` saved into `model`, sharded or replicated as it now is. Every rank
    passes the full state (read memory-mapped, so the ranks of a node share the page cache): torch's
    broadcast-from-rank-0 mode skips the model on ranks given an empty dict and then waits forever."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    options = StateDictOptions(full_state_dict=True, strict=False)
    set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state,
                   options=options)


def expected_state_keys(model: nn.Module) -> set[str]:
    """Names `gather_training_state` saves: trainable parameters and persistent buffers."""
    inner = unwrap(model)
    names = {name for name, p in inner.named_parameters() if p.requires_grad}
    return names | set(inner.state_dict().keys()) - {name for name, _ in inner.named_parameters()}


class StopRequest:
    """Remembers SIGTERM/SIGUSR1 (Slurm's warnings before a time limit or preemption) so the training loop
    can write a checkpoint at the next step boundary and leave; the job then resumes with --resume."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum

    def __enter__(self) -> StopRequest:
        try:
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        except ValueError:  # not the main thread: leave signals alone
            self._previous = {}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
