"""Energy per inference of the paper's quantum head: state-vector simulation on GPUs against a QPU.

All functions are pure and vectorised: a parameter may be a float or an array of Monte Carlo samples of
shape [samples, 1], and `n` an array of qubit counts of shape [n_count]; results broadcast to
[samples, n_count]. Parameters are looked up by dotted name (`gpu.device_power_W`) in a flat mapping.

GPU (state vector, roofline):
    bytes(n)    = precision_bytes · 2^n
    devices(n)  = 2^ceil(log2(bytes / (device_memory · usable_fraction))), at least 1
    batch(n)    = states that fit one device together (1 once a state needs several devices), ≤ batch_size
    t_pass(n)   = max(kernel_launch, batch · 2·bytes/devices / (bandwidth · efficiency)) / batch
    t_comm(n)   = exchanges · (bytes/devices)(1 − 1/devices) / link bandwidth (NVLink inside a node,
                  network across nodes); exchanges = exchanges_per_layer · ring layers, 0 on one device
    E_gpu(n)    = pue · devices · (device_power + node_overhead/gpus_per_node) · (passes·t_pass + t_comm)
QPU (trapped ion, sequential gates):
    T_shot(n)   = t_prep + (g1·t_1q + g2·t_2q)/parallelism + t_readout
    E_qpu(n)    = (system_power + power_per_qubit·n) · (shots · T_shot · duty_factor + overhead_per_circuit)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

Params = Mapping[str, float | np.ndarray]


@dataclass(frozen=True)
class Ansatz:
    """The re-uploading module: `reuploads` × [R_Y encoding, PQC1], then PQC2; PQC = `layers` ring layers."""

    layers: int
    connectivity: int
    reuploads: int

    @property
    def ring_layers(self) -> int:
        return self.layers * (self.reuploads + 1)

    def cnots(self, n: np.ndarray) -> np.ndarray:
        return self.ring_layers * self.connectivity * np.asarray(n)

    def single_qubit_gates(self, n: np.ndarray) -> np.ndarray:
        return self.reuploads * np.asarray(n) + self.ring_layers * self.connectivity * np.asarray(n)


def state_bytes(n: np.ndarray, p: Params) -> np.ndarray:
    return p["gpu.precision_bytes"] * np.exp2(n)


def devices_needed(n: np.ndarray, p: Params) -> np.ndarray:
    """Devices holding one state: a power of two, because the top qubits index the ranks."""
    usable = p["gpu.device_memory_B"] * p["gpu.usable_memory_fraction"]
    return np.exp2(np.maximum(0.0, np.ceil(np.log2(state_bytes(n, p) / usable))))


def states_per_device(n: np.ndarray, p: Params) -> np.ndarray:
    """How many sentences are simulated together (batch) on one device; 1 once a state is distributed."""
    usable = p["gpu.device_memory_B"] * p["gpu.usable_memory_fraction"]
    return np.clip(np.floor(usable / state_bytes(n, p)), 1.0, p["gpu.batch_size"])


def gpu_passes(n: np.ndarray, ansatz: Ansatz, p: Params) -> np.ndarray:
    """Sweeps over the state per inference: fused gate passes plus one pass for all <Z_i>."""
    gates = ansatz.cnots(n) + ansatz.single_qubit_gates(n)
    return np.ceil(gates / p["gpu.gates_per_pass"]) + 1


def gpu_time_s(n: np.ndarray, ansatz: Ansatz, p: Params) -> tuple[np.ndarray, np.ndarray]:
    """(compute, communication) seconds per inference."""
    devices = devices_needed(n, p)
    batch = states_per_device(n, p)
    local_bytes = state_bytes(n, p) / devices
    sweep = 2.0 * local_bytes * batch / (p["gpu.memory_bandwidth_Bps"] * p["gpu.bandwidth_efficiency"])
    t_pass = np.maximum(p["gpu.kernel_launch_s"], sweep) / batch
    compute = gpu_passes(n, ansatz, p) * t_pass
    link = np.where(devices <= p["gpu.gpus_per_node"], p["gpu.nvlink_bandwidth_Bps"], p["gpu.network_bandwidth_Bps"])
    exchanges = np.where(devices > 1, p["gpu.exchanges_per_layer"] * ansatz.ring_layers, 0.0)
    comm = exchanges * local_bytes * (1.0 - 1.0 / devices) / link
    return compute, comm


def gpu_power_W(n: np.ndarray, p: Params) -> np.ndarray:
    """Power of the devices one inference occupies, with their share of the node's host power."""
    per_device = p["gpu.device_power_W"] + p["gpu.node_overhead_W"] / p["gpu.gpus_per_node"]
    return devices_needed(n, p) * per_device


def gpu_energy_J(n: np.ndarray, ansatz: Ansatz, p: Params) -> np.ndarray:
    compute, comm = gpu_time_s(n, ansatz, p)
    return p["gpu.pue"] * gpu_power_W(n, p) * (compute + comm)


def qpu_shot_s(n: np.ndarray, ansatz: Ansatz, p: Params) -> np.ndarray:
    two_qubit = ansatz.cnots(n)
    one_qubit = ansatz.single_qubit_gates(n) + p["qpu.native_1q_per_2q"] * two_qubit
    gates = (one_qubit * p["qpu.t_1q_s"] + two_qubit * p["qpu.t_2q_s"]) / p["qpu.gate_parallelism"]
    return p["qpu.t_prep_s"] + gates + p["qpu.t_readout_s"]


def qpu_energy_J(n: np.ndarray, ansatz: Ansatz, p: Params) -> np.ndarray:
    wall = p["qpu.shots"] * qpu_shot_s(n, ansatz, p) * p["qpu.duty_factor"] + p["qpu.overhead_per_circuit_s"]
    return (p["qpu.system_power_W"] + p["qpu.power_per_qubit_W"] * np.asarray(n)) * wall


def crossover(n: np.ndarray, gpu: np.ndarray, qpu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first integer n where the QPU uses no more energy than the GPU, fractional crossing).

    The fractional crossing interpolates log(E_qpu/E_gpu) linearly between the integer counts around it.
    NaN where the QPU never wins in `n`; `n[0]` where it wins from the start.
    """
    n = np.asarray(n, dtype=float)
    log_ratio = np.atleast_2d(np.log(qpu) - np.log(gpu))
    wins = log_ratio <= 0
    first = np.argmax(wins, axis=1)
    never = ~wins.any(axis=1)
    from_start = wins[:, 0]
    previous = np.maximum(first - 1, 0)
    rows = np.arange(len(first))
    above, below = log_ratio[rows, previous], log_ratio[rows, first]
    step = n[first] - n[previous]
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(from_start, n[0], n[previous] + step * above / (above - below))
    integer = np.where(never, np.nan, n[first])
    return integer, np.where(never, np.nan, fraction)
