"""A synthetic screening study written through the real `write_run`, with known effects.

test accuracy = 0.85 + 0.01·[n_qubits == 8] + 0.004·[layers == 2] + seed offset + small noise; the
classical kinds sit below the best quantum config by a known margin, so statistics can be checked
against the truth.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from hpcq.results import write_run

SEEDS = (0, 1, 2, 3)
QUBITS = (4, 8)
LAYERS = (1, 2)
QUBIT_EFFECT = 0.01
LAYER_EFFECT = 0.004
CLASSICAL_MEANS = {"logreg": 0.85, "svc": 0.845}


def _train_config(seed: int, kind: str, **model) -> dict:
    return {
        "task": "head",
        "seed": seed,
        "data": {"name": "sst2-sentences", "train_size": 435},
        "model": {"kind": kind, **model},
        "train": {"lr": 0.01, "epochs": 4},
    }


def write_study(root: Path, *, noise: float = 0.002, seeds=SEEDS) -> list[Path]:
    """Quantum runs over qubits × layers × seeds plus logreg/svc baselines per seed."""
    rng = np.random.default_rng(7)
    seed_offset = {s: 0.003 * (s - 1.5) for s in seeds}
    paths = []
    for n_qubits, layers, seed in itertools.product(QUBITS, LAYERS, seeds):
        accuracy = (0.85 + QUBIT_EFFECT * (n_qubits == 8) + LAYER_EFFECT * (layers == 2)
                    + seed_offset[seed] + rng.normal(0, noise))
        config = _train_config(seed, "quantum", n_qubits=n_qubits, layers=layers, connectivity=1, reuploads=1,
                               encoders=1, shots=None, noise=None)
        paths.append(_write_train(root / f"q{n_qubits}_l{layers}_s{seed}.h5", config, accuracy, rng))
    for kind, mean in CLASSICAL_MEANS.items():
        for seed in seeds:
            accuracy = mean + seed_offset[seed] + rng.normal(0, noise)
            paths.append(_write_train(root / "classical" / f"{kind}_s{seed}.h5", _train_config(seed, kind),
                                      accuracy, rng))
    return paths


def _write_train(path: Path, config: dict, accuracy: float, rng) -> Path:
    config = {**config, "output": str(path)}  # a per-run path, as `hpcq train` records: not a factor
    epochs = config["train"]["epochs"]
    val_curve = accuracy - 0.05 * np.exp(-np.arange(epochs)) + rng.normal(0, 0.001, epochs)
    return write_run(
        path,
        kind="train",
        config=config,
        metrics={"train_loss": 0.7 * np.exp(-0.5 * np.arange(epochs)), "val_accuracy": val_curve},
        final={"val_accuracy": float(accuracy + rng.normal(0, 0.001)), "test_accuracy": float(accuracy),
               "test_size": 9101, "n_trainable_params": 100 if config["model"]["kind"] == "quantum" else 769},
        timing={"total_s": 10.0},
        energy={"method": "estimate", "joules": 50.0, "mean_watts": 5.0, "interval_s": 0.1, "devices": ["cpu"]},
    )


GPU_CACHE_BYTES = 50 * 2**20  # an H100's L2


def write_bench_scale(root: Path, *, qubits=(26, 27, 28, 29, 30), device: str = "cuda", method: str = "nvml",
                      gbps: float = 20.0, watts: float = 30.0, cache_bytes: float = GPU_CACHE_BYTES,
                      overhead_s: float = 0.0, metered_s: float = 2.0) -> list[Path]:
    """bench_scale runs on 1 and 2 ranks, physically consistent by default: time per pass = overhead + 2·state
    bytes / bandwidth (so 2^n beyond the cache), metered power, 2-rank runs exchanging half the state."""
    paths = []
    for n_qubits, ranks in itertools.product(qubits, (1, 2)):
        state_bytes = 8 * 2**n_qubits
        rank_gbps = gbps * (0.9 if ranks == 2 else 1.0)
        time_per_pass = overhead_s + 2 * state_bytes / (rank_gbps * 1e9) / ranks
        comm_bytes = state_bytes / 2 if ranks > 1 else 0
        paths.append(write_run(
            root / "scale" / f"n{n_qubits}_r{ranks}.h5",
            kind="bench_scale",
            config={"bench": "scale", "n_qubits": n_qubits, "ranks": ranks, "backend": "distributed",
                    "device": device},
            final={"n_qubits": n_qubits, "ranks": ranks, "time_per_pass_s": time_per_pass,
                   "bytes_moved": 2 * state_bytes, "achieved_gbps": 2 * state_bytes / ranks / time_per_pass / 1e9,
                   "copy_gbps": 25.0, "state_bytes": state_bytes, "local_state_bytes": state_bytes / ranks,
                   "cache_bytes": cache_bytes, "exchanges": 2 if ranks > 1 else 0,
                   "comm_time_s": comm_bytes / 5e9, "comm_bytes": comm_bytes},
            energy={"method": method, "joules": watts * ranks * metered_s, "mean_watts": watts * ranks,
                    "duration_s": metered_s, "interval_s": 0.1, "ranks_metered": ranks, "devices": ["gpu0: H100"]},
        ))
    return paths
