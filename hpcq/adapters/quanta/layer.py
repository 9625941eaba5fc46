"""`QuantaLinear`: an `nn.Linear` with a QuanTA update, W_eff = W0 + T(θ) − T(θ0), as the official code
(`quanta-fine-tuning/quanta`, `initialize_mode="sum_opposite_freeze_one"`) computes it: gates initialised with
its `kaiming_uniform_` (`init_gate`), and with dropout p > 0 the published form
(W0 − T(θ0))·x + b + T(θ)·dropout(x), where only T(θ) sees the dropped input (not LoRA's form,
W0·x + b + ΔW·dropout(x)).

T(θ) is the chain of two-axis gates (`contraction.py`); θ0 is a frozen persistent copy of the initial gates
(buffers `quanta_frozen_<low>_<high>`, saved with the adapter), so the update is zero at the start without any
zero-initialised gate. The base weight is never modified outside `merge()`/`unmerge()` (unlike the official
code, which subtracts T(θ0) from W in place on the first forward): the dense T(θ0) is cached and subtracted
from W0 on the fly, one D×D elementwise operation per forward, so a step costs one gate chain, not two.

Two ways to compute a training forward, numerically the same function (`path`):
* "chain": the gates applied to the activations one after another (`contraction.apply_gates`), N(N-1)/2 small
  GEMMs per forward whose cost grows with the tokens as 3·n·D·S multiply-adds over forward and backward
  (S = Σ_{m<n} d_m d_n), and which keeps N(N-1)/2 activation-sized intermediates for backward;
* "dense": T(θ) contracted into a D×D matrix (the merge einsum, D²·S multiply-adds whatever the batch) and
  folded into the base GEMM, `F.linear(x, W0 − T(θ0) + T(θ))`: no extra forward GEMM and no intermediates, at
  the price of the weight-gradient GEMM n·in·out that LoRA and frozen layers do not need.
"auto" takes, per forward, the path with fewer multiply-adds after weighting the chain's by `CHAIN_PENALTY`;
without gradients (evaluation), W0 − T(θ0) + T(θ) is built once per change of W0, θ or θ0 and reused
(`_evaluation_weight` says how a change is seen), so an unmerged adapter then runs at the base layer's speed.
The cache is worth keeping: on MiniLM (12 adapted layers, 32 rows, 1 thread) rebuilding that weight on every
no-grad forward cost 6 % of the forward at 48 tokens per row and 15 % at 16; checking the cache, 0.4-1.2 ms.

Layers whose input and output sizes differ are handled as the official code does (its Appendix B): the gates
act on D = max(in, out) = ∏ axes, the input is zero-padded to D and the output cropped to `out_features`.
Separate output axes would save parameters on such layers but were never part of the released method, so this
keeps QuanTA's parameter count and results comparable to the paper's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hpcq.adapters.quanta.axes import check_axes, gate_pairs, parameter_count
from hpcq.adapters.quanta.config import check_path
from hpcq.adapters.quanta.contraction import apply_gates, contraction_plan
from hpcq.adapters.quanta.einsum import dense_operator
from hpcq.adapters.targets import require_linear

CHAIN_PENALTY = 4.0
"""How many multiply-adds of one large GEMM cost as much time as one of the chain's: its GEMMs have an inner
size of only d_m·d_n (16 to 128) and it copies the whole activation between them. Measured with 1 thread on
the 2-core development machine for 6-4-4-4, 1,536 tokens (`hpcq bench adapters` reports both paths): the chain's
212 M multiply-adds took 96 ms, the dense path's 279 M (weight gradient plus building T) 38 ms."""


def _gate_arithmetic(device: torch.device):
    """The gates' contractions in their own dtype (float32): autocast would run some of their einsum steps in
    bfloat16 and others not, and tensordot refuses the mix. Only these small contractions leave autocast; the
    layer's GEMMs with the activations keep it."""
    return torch.autocast(device.type, enabled=False)


def init_gate(gate: torch.Tensor) -> torch.Tensor:
    """The official initialisation, in place: the gate as a (d_low d_high)² matrix drawn from `kaiming_uniform_`
    with nonlinearity='linear' (gain 1), U(−b, b) with b = √(3/fan_in), fan_in = d_low·d_high (std 1/√fan_in).
    The official code also passes a=√5, which only a leaky-ReLU gain reads; nn.Linear's default (a=√5 with its
    leaky-ReLU gain, b = 1/√fan_in) is √3 smaller per gate and, through the product of the N(N−1)/2 gates, makes
    T(θ0) and the gradients orders of magnitude smaller than in the published method."""
    width = gate.shape[0] * gate.shape[1]
    return nn.init.kaiming_uniform_(gate.view(width, -1), nonlinearity="linear")


def snapshot(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Detached copies of `tensors`, to tell later whether they changed (`same_values`)."""
    return [t.detach().clone() for t in tensors]


def same_values(copies: list[torch.Tensor], tensors: list[torch.Tensor]) -> bool:
    """Whether every tensor still equals its copy exactly (same shape, dtype, device and values). Reading
    the gates is cheap: Σ (d_m d_n)² values, e.g. 43,008 for a 4096² layer, against a weight's D²."""
    return len(copies) == len(tensors) and all(
        c.shape == t.shape and c.dtype == t.dtype and c.device == t.device and torch.equal(c, t)
        for c, t in zip(copies, tensors))


def _pair_key(pair: tuple[int, int]) -> str:
    return f"{pair[0]}_{pair[1]}"


class QuantaLinear(nn.Module):
    """Wraps `base_layer` (kept as is, frozen) and adds the QuanTA update on the `axes` factorisation."""

    def __init__(self, base_layer: nn.Linear, axes: tuple[int, ...], dropout: float = 0.0, name: str = "layer",
                 path: str = "auto"):
        super().__init__()
        require_linear(base_layer, name)
        self.base_layer = base_layer
        self.in_features = base_layer.in_features
        self.out_features = base_layer.out_features
        self.axes = tuple(int(a) for a in axes)
        check_axes(self.axes, self.in_features, self.out_features, name)
        self.dim = math.prod(self.axes)
        self.quanta_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        check_path(path)
        self.path = path
        self.merged = False
        self._plan = contraction_plan(self.axes)
        self._frozen_cache: tuple[list[torch.Tensor], torch.Tensor] | None = None
        self._eval_cache: tuple[tuple, list[torch.Tensor], torch.Tensor] | None = None
        weight = base_layer.weight
        self.quanta_gates = nn.ParameterDict()
        for low, high in gate_pairs(len(self.axes)):
            shape = (self.axes[low], self.axes[high], self.axes[low], self.axes[high])
            gate = torch.empty(shape, device=weight.device, dtype=torch.float32)
            init_gate(gate)
            self.quanta_gates[_pair_key((low, high))] = nn.Parameter(gate)
            self.register_buffer(f"quanta_frozen_{_pair_key((low, high))}", gate.detach().clone(), persistent=True)

    @property
    def frozen_gates(self) -> list[torch.Tensor]:
        """θ0, in the official gate order."""
        return [getattr(self, f"quanta_frozen_{key}") for key in self.quanta_gates]

    @property
    def n_parameters(self) -> int:
        """Trainable parameters: Σ_{m<n} (d_m d_n)²."""
        return parameter_count(self.axes)

    def _crop(self, dense: torch.Tensor) -> torch.Tensor:
        return dense[: self.out_features, : self.in_features]

    def _frozen_dense(self) -> torch.Tensor:
        """T(θ0) cropped to out×in, float32; recomputed only when θ0 changes (e.g. after loading an adapter)."""
        frozen = self.frozen_gates
        if self._frozen_cache is None or not same_values(self._frozen_cache[0], frozen):
            with torch.no_grad(), _gate_arithmetic(frozen[0].device):
                dense = self._crop(dense_operator(frozen, self.axes)).contiguous()
                self._frozen_cache = (snapshot(frozen), dense)
        return self._frozen_cache[1]

    def _gates_dense(self) -> torch.Tensor:
        """T(θ) cropped to out×in (differentiable in θ)."""
        gates = list(self.quanta_gates.values())
        with _gate_arithmetic(gates[0].device):
            return self._crop(dense_operator(gates, self.axes))

    def delta_weight(self) -> torch.Tensor:
        """ΔW = T(θ) − T(θ0) as an out×in float32 matrix (differentiable in θ)."""
        return self._gates_dense() - self._frozen_dense()

    def chooses_dense(self, tokens: int) -> bool:
        """Whether a training forward over `tokens` rows takes the dense path (see the module docstring)."""
        if self.path != "auto":
            return self.path == "dense"
        spread = sum(self.axes[m] * self.axes[n] for m, n in gate_pairs(len(self.axes)))
        chain = 3 * tokens * self.dim * spread
        dense = tokens * self.in_features * self.out_features + 3 * self.dim * self.dim * spread
        return dense <= CHAIN_PENALTY * chain

    def _update(self, x: torch.Tensor) -> torch.Tensor:
        """T(θ)·pad(x), cropped to the output size, for x [..., in_features], in the gates' dtype."""
        gates = list(self.quanta_gates.values())
        rows = x.reshape(-1, self.in_features).to(gates[0].dtype)
        if self.dim > self.in_features:
            rows = F.pad(rows, (0, self.dim - self.in_features))
        with _gate_arithmetic(x.device):
            out = apply_gates(rows, gates, self._plan)
        return out[:, : self.out_features].reshape(*x.shape[:-1], self.out_features)

    def _evaluation_weight(self) -> torch.Tensor:
        """W0 − T(θ0) + T(θ) without gradients, rebuilt only when W0, θ or θ0 change: θ and θ0 are compared
        value for value with the copies it was built from (any change counts, even one through `.data`, which
        autograd's version counter does not see); the frozen W0 by storage and version counter (every in-place
        write but one through `.data`: merge, unmerge, load_state_dict), as a copy of W0 would double the
        layer's memory."""
        weight = self.base_layer.weight
        gates = [*self.quanta_gates.values(), *self.frozen_gates]
        base_key = (weight.data_ptr(), weight._version, weight.device, weight.dtype)
        cache = self._eval_cache
        if cache is None or cache[0] != base_key or not same_values(cache[1], gates):
            effective = weight.float() - self._frozen_dense() + self._gates_dense()
            self._eval_cache = cache = (base_key, snapshot(gates), effective.to(weight.dtype))
        return cache[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(W0 − T(θ0))·x + b + T(θ)·dropout(x), the published (official) form: only T(θ) sees the dropped
        input, so with dropout > 0 in training the output at θ = θ0 is not W0·x + b (it is in expectation, and
        without dropout). Without dropout both terms fold into one weight, W0 − T(θ0) + T(θ)."""
        if self.merged:
            return self.base_layer(x)
        weight, bias = self.base_layer.weight, self.base_layer.bias
        dropout = self.training and isinstance(self.quanta_dropout, nn.Dropout)
        if not torch.is_grad_enabled() and not dropout:
            return F.linear(x, self._evaluation_weight(), bias)
        self._eval_cache = None  # training: θ changes every step, so do not hold a stale out×in copy
        # W0 − T(θ0) on the fly: W0 itself is never written to (the official code subtracts in place)
        base_weight = weight - self._frozen_dense().to(weight.dtype)
        dense = self.chooses_dense(x.numel() // self.in_features)
        if dense and not dropout:  # one GEMM
            return F.linear(x, base_weight + self._gates_dense().to(weight.dtype), bias)
        base = F.linear(x, base_weight, bias)
        dropped = self.quanta_dropout(x) if dropout else x
        if dense:
            return base + F.linear(dropped, self._gates_dense().to(weight.dtype))
        return base + self._update(dropped).to(base.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        """W ← W0 + ΔW (computed in float32, then cast); the layer then runs as a plain nn.Linear."""
        if self.merged:
            return
        weight = self.base_layer.weight
        weight.copy_((weight.float() + self.delta_weight()).to(weight.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W ← W − ΔW, restoring W0 up to rounding."""
        if not self.merged:
            return
        weight = self.base_layer.weight
        weight.copy_((weight.float() - self.delta_weight()).to(weight.dtype))
        self.merged = False

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, axes={self.axes}, "
                f"parameters={self.n_parameters}, path={self.path}, merged={self.merged}")
