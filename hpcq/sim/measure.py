"""Expectation values of Pauli strings on a chunk of states in any layout, and their adjoint seeds.

States are [2**n, batch] (see layout.py). (Oψ)[j] = i^{#Y} · (−1)^{popcount(src & (Z|Y))} · ψ[src] with
src = j ⊕ (X|Y): sign first, then flip.
"""

from __future__ import annotations

import torch

from hpcq.sim.layout import Layout, qubit_view
from hpcq.sim.memory import zero_state
from hpcq.sim.observables import Pauli


def _axes(layout: Layout, qubits) -> list[int]:
    position = {q: a for a, q in enumerate(layout)}
    return sorted(position[q] for q in qubits)


def _sign_tensor(layout: Layout, qubits, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(−1)^{Σ bits of `qubits`} broadcastable against the [2, ..., 2, batch] view."""
    shape = [1] * (len(layout) + 1)
    sign = torch.ones(shape, dtype=dtype, device=device)
    for axis in _axes(layout, qubits):
        axis_shape = list(shape)
        axis_shape[axis] = 2
        sign = sign * torch.tensor([1.0, -1.0], dtype=dtype, device=device).view(axis_shape)
    return sign


def _phase(pauli: Pauli, complex_path: bool) -> complex | None:
    """i^{#Y}; None when it is imaginary on a real state (then <O> is identically zero)."""
    n_y = len(pauli.y)
    if complex_path:
        return 1j**n_y
    return None if n_y % 2 else (-1.0) ** (n_y // 2)


def apply_pauli(state: torch.Tensor, layout: Layout, pauli: Pauli, complex_path: bool) -> torch.Tensor | None:
    """O ψ for one Pauli string, or None when it contributes nothing (odd #Y on a real state)."""
    phase = _phase(pauli, complex_path)
    if phase is None:
        return None
    view = qubit_view(state, len(layout))
    if pauli.signs:
        view = view * _sign_tensor(layout, pauli.signs, view.real.dtype, view.device)
    if pauli.flips:
        view = view.flip(_axes(layout, pauli.flips))
    result = view.reshape(state.shape)
    return result * phase if phase != 1 else result


#: states with more amplitudes than this sum diagonal observables chunk by chunk, so that measuring needs no
#: temporary as large as the state (the in-place forward's memory plan counts none)
CHUNK_AMPLITUDES = 2**22


def _diagonal_in_chunks(state: torch.Tensor, layout: Layout, paulis: list[Pauli], complex_path: bool,
                        out: torch.Tensor, columns: list[int]) -> None:
    """Add <Z...> of each diagonal Pauli into out[:, column], a chunk of leading rows at a time: a chunk's
    rows share their high index bits, whose Z factors are one sign per chunk."""
    n, batch = len(layout), state.shape[-1]
    low = min(n, max(0, (CHUNK_AMPLITUDES // batch).bit_length() - 1))
    low_layout = layout[n - low:]
    # per Pauli: the row bits of its high Z qubits, and the sign pattern of its low ones
    factors = [(sum(1 << (n - 1 - layout.index(q)) for q in pauli.z if q not in low_layout),
                _sign_tensor(low_layout, [q for q in pauli.z if q in low_layout], out.dtype, state.device))
               for pauli in paulis]
    for start in range(0, state.shape[0], 2**low):
        chunk = state[start:start + 2**low]
        probabilities = qubit_view(chunk.abs() ** 2 if complex_path else chunk * chunk, low)
        for column, (high_bits, sign) in zip(columns, factors):
            parity = (start & high_bits).bit_count() % 2
            out[:, column] += (-1) ** parity * (probabilities * sign).reshape(-1, batch).sum(0)


def expectations(state: torch.Tensor, layout: Layout, paulis: list[Pauli], complex_path: bool) -> torch.Tensor:
    """[batch, n_observables] real expectation values."""
    n = len(layout)
    batch = state.shape[-1]
    real_dtype = state.real.dtype
    out = torch.zeros(batch, len(paulis), dtype=real_dtype, device=state.device)
    chunked = state.numel() > CHUNK_AMPLITUDES
    if chunked:
        diagonal = [i for i, p in enumerate(paulis) if p.is_diagonal]
        _diagonal_in_chunks(state, layout, [paulis[i] for i in diagonal], complex_path, out, diagonal)
    probabilities = None
    for i, pauli in enumerate(paulis):
        if pauli.is_diagonal and chunked:
            continue
        if pauli.is_diagonal:
            if probabilities is None:
                probabilities = qubit_view(state.abs() ** 2 if complex_path else state * state, n)
            keep = _axes(layout, pauli.z)
            summed = [a for a in range(n) if a not in keep]
            marginal = probabilities.sum(dim=summed, keepdim=True) if summed else probabilities
            sign = _sign_tensor(layout, pauli.z, real_dtype, state.device)
            out[:, i] = (marginal * sign).reshape(-1, batch).sum(0)
        else:
            applied = apply_pauli(state, layout, pauli, complex_path)
            if applied is not None:
                out[:, i] = (state.conj() * applied).real.sum(0) if complex_path else (state * applied).sum(0)
    return out


def adjoint_seed(
    state: torch.Tensor, layout: Layout, paulis: list[Pauli], grad_out: torch.Tensor, complex_path: bool
) -> torch.Tensor:
    """λ = 2 Σ_i g_i O_i ψ: the gradient (PyTorch's convention) of Σ_i g_i <ψ|O_i|ψ> with respect to ψ.

    Built as one new state, the other terms added in place: diagonal observables together cost one pass over
    the state and no state-sized temporary (the in-place backward of a large state holds ψ, λ and at most
    one more)."""
    n = len(layout)
    batch = state.shape[-1]
    real_dtype = state.real.dtype
    weights = 2 * grad_out.to(real_dtype)
    diagonal = None
    for i, pauli in enumerate(paulis):
        if pauli.is_diagonal:
            sign = _sign_tensor(layout, pauli.z, real_dtype, state.device)
            term = weights[:, i].view([1] * n + [batch]) * sign
            diagonal = term if diagonal is None else diagonal + term
    seed = zero_state(tuple(state.shape), state.dtype, state.device)
    if diagonal is not None:
        torch.mul(qubit_view(state, n), diagonal, out=qubit_view(seed, n))
    for i, pauli in enumerate(paulis):
        applied = None if pauli.is_diagonal else apply_pauli(state, layout, pauli, complex_path)
        if applied is not None:
            seed.addcmul_(applied, weights[:, i].view(1, batch))
    return seed
