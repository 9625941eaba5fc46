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


def write_bench_scale(root: Path) -> list[Path]:
    """bench_scale runs: time per pass doubling per qubit, measured power, 1 and 2 ranks."""
    paths = []
    for n_qubits, ranks in itertools.product((20, 22, 24, 26), (1, 2)):
        state_bytes = 16 * 2**n_qubits
        gbps = 20.0 * (0.9 if ranks == 2 else 1.0)
        time_per_pass = 2 * state_bytes / (gbps * 1e9) / ranks
        comm_bytes = state_bytes / 2 if ranks > 1 else 0
        paths.append(write_run(
            root / "scale" / f"n{n_qubits}_r{ranks}.h5",
            kind="bench_scale",
            config={"bench": "scale", "n_qubits": n_qubits, "ranks": ranks, "backend": "distributed"},
            final={"n_qubits": n_qubits, "ranks": ranks, "time_per_pass_s": time_per_pass,
                   "bytes_moved": 2 * state_bytes, "achieved_gbps": gbps, "copy_gbps": 25.0,
                   "comm_time_s": comm_bytes / 5e9, "comm_bytes": comm_bytes},
            energy={"method": "rapl", "joules": 30.0 * time_per_pass * 10, "mean_watts": 30.0 * ranks,
                    "interval_s": 0.1, "devices": ["intel-rapl:0: package-0"]},
        ))
    return paths
