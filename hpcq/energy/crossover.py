"""`hpcq energy`: the GPU-versus-QPU crossover qubit count, its uncertainty band and what drives it.

Reads a crossover config (default: the shipped `crossover_default.yaml`), optionally replaces GPU
assumptions by values measured in `bench_scale` runs, and writes the energy plot, a sensitivity table
(CSV + Markdown) and the curves. Every number comes from the config or the measurements.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from hpcq.energy import model
from hpcq.errors import ConfigError, DataError

DEFAULT_CONFIG = "crossover_default.yaml"
SECTIONS = ("gpu", "qpu")
DISTRIBUTIONS = ("loguniform", "uniform")


@dataclass
class Parameter:
    name: str
    value: float
    low: float | None
    high: float | None
    distribution: str
    source: str

    @property
    def varies(self) -> bool:
        return self.low is not None and self.high is not None and self.high > self.low


@dataclass
class CrossoverConfig:
    parameters: dict[str, Parameter]
    ansatz: model.Ansatz
    qubits: np.ndarray
    samples: int
    seed: int
    interval: float
    targets: list[dict[str, Any]]
    scenarios: list[dict[str, Any]]
    origin: str

    def nominal(self) -> dict[str, float]:
        return {name: p.value for name, p in self.parameters.items()}


def _parameter(name: str, spec: Any) -> Parameter:
    if not isinstance(spec, Mapping) or "value" not in spec or not spec.get("source"):
        raise ConfigError(f"energy parameter {name!r} must be a mapping with 'value' and 'source' "
                          f"(the literature or measurement it comes from); got {spec!r}")
    try:
        value = float(spec["value"])
        low, high = (float(v) for v in spec["range"]) if "range" in spec else (None, None)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"energy parameter {name!r}: value and range must be numbers ({err})") from err
    distribution = spec.get("distribution", "loguniform")
    if distribution not in DISTRIBUTIONS:
        raise ConfigError(f"energy parameter {name!r}: distribution {distribution!r} is not one of {DISTRIBUTIONS}")
    if low is not None and not low <= value <= high:
        raise ConfigError(f"energy parameter {name!r}: value {value} lies outside its range [{low}, {high}]")
    if distribution == "loguniform" and low is not None and low <= 0:
        raise ConfigError(f"energy parameter {name!r}: a log-uniform range needs low > 0 (got {low}); "
                          "use distribution: uniform")
    return Parameter(name, value, low, high, distribution, str(spec["source"]))


def _positive_int(section: Mapping, key: str, where: str) -> int:
    value = section.get(key)
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}.{key}={value!r} must be a positive integer")
    return value


REQUIRED = {
    "gpu": ("precision_bytes", "memory_bandwidth_Bps", "bandwidth_efficiency", "device_memory_B",
            "usable_memory_fraction", "device_power_W", "gpus_per_node", "node_overhead_W", "nvlink_bandwidth_Bps",
            "network_bandwidth_Bps", "exchanges_per_layer", "gates_per_pass", "kernel_launch_s", "batch_size", "pue"),
    "qpu": ("system_power_W", "power_per_qubit_W", "t_1q_s", "t_2q_s", "native_1q_per_2q", "t_readout_s",
            "t_prep_s", "gate_parallelism", "shots", "duty_factor", "overhead_per_circuit_s"),
}


def _scenario_value(scenario: Mapping, key: str, value: Any, parameters: Mapping[str, Parameter]) -> float:
    if key not in parameters:
        raise ConfigError(f"scenario {scenario.get('name')!r} sets unknown parameter {key!r}; "
                          "use a dotted name such as qpu.shots")
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"scenario {scenario.get('name')!r}: {key}={value!r} is not a number") from err


def parse_config(raw: Mapping, origin: str) -> CrossoverConfig:
    """Validate a crossover config; errors name the key and what it should be."""
    parameters = {}
    for section in SECTIONS:
        entries = raw.get(section)
        if not isinstance(entries, Mapping):
            raise ConfigError(f"{origin}: section {section!r} is missing; see {DEFAULT_CONFIG} for its parameters")
        missing = [key for key in REQUIRED[section] if key not in entries]
        unknown = [key for key in entries if key not in REQUIRED[section]]
        if missing or unknown:
            raise ConfigError(f"{origin}: section {section!r} lacks {missing} / has unknown {unknown}; "
                              f"expected exactly {list(REQUIRED[section])}")
        for key, spec in entries.items():
            parameters[f"{section}.{key}"] = _parameter(f"{section}.{key}", spec)
    circuit = raw.get("circuit", {})
    ansatz = model.Ansatz(*(_positive_int(circuit, key, "circuit") for key in ("layers", "connectivity", "reuploads")))
    qubits = raw.get("qubits", {})
    low, high = _positive_int(qubits, "min", "qubits"), _positive_int(qubits, "max", "qubits")
    if high <= low:
        raise ConfigError(f"qubits.max={high} must exceed qubits.min={low}")
    monte_carlo = raw.get("monte_carlo", {})
    interval = float(monte_carlo.get("interval", 0.9))
    if not 0 < interval < 1:
        raise ConfigError(f"monte_carlo.interval={interval} must lie in (0, 1), e.g. 0.9")
    scenarios = raw.get("scenarios") or [{"name": "nominal", "description": "the config values", "set": {}}]
    for scenario in scenarios:
        scenario["set"] = {key: _scenario_value(scenario, key, value, parameters)
                           for key, value in (scenario.get("set") or {}).items()}
    return CrossoverConfig(
        parameters=parameters, ansatz=ansatz, qubits=np.arange(low, high + 1, dtype=float),
        samples=_positive_int(monte_carlo, "samples", "monte_carlo") if "samples" in monte_carlo else 2000,
        seed=int(monte_carlo.get("seed", 0)), interval=interval, targets=list(raw.get("targets", [])),
        scenarios=scenarios, origin=origin,
    )


def load_config(path: Path | None = None) -> CrossoverConfig:
    """The crossover config at `path`, or the shipped default."""
    if path is None:
        text, origin = resources.files("hpcq.energy").joinpath(DEFAULT_CONFIG).read_text(), f"hpcq/energy/{DEFAULT_CONFIG}"
    else:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"energy config {path} does not exist; omit --config to use the shipped default")
        text, origin = path.read_text(), str(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"energy config {origin} is not valid YAML: {err}") from err
    if not isinstance(raw, Mapping):
        raise ConfigError(f"energy config {origin} must be a YAML mapping")
    return parse_config(raw, origin)


# --- measured GPU parameters -------------------------------------------------------------------------

@dataclass
class MeasuredGpu:
    """GPU-side values fitted from bench_scale runs, with how they were obtained."""

    overrides: dict[str, float]
    notes: list[str] = field(default_factory=list)
    fit: dict[str, float] = field(default_factory=dict)


def fit_measured_gpu(runs: pd.DataFrame, config: CrossoverConfig) -> MeasuredGpu:
    """Replace roofline assumptions by bench_scale measurements: time per gate pass ∝ 2^(b·n) (fitted),
    effective bandwidth at the largest sizes, device power from the energy meter, link bandwidth from
    the communication of multi-rank runs."""
    needed = {"final.n_qubits", "final.ranks", "final.time_per_pass_s", "final.bytes_moved"}
    bench = runs[runs["run_kind"] == "bench_scale"] if "run_kind" in runs.columns else runs.iloc[0:0]
    if bench.empty or not needed <= set(bench.columns):
        raise DataError(f"no usable bench_scale runs (need columns {sorted(needed)}); run `hpcq bench scale` "
                        "or leave out --results to use the roofline")
    single = bench[bench["final.ranks"] == 1].dropna(subset=list(needed))
    if single["final.n_qubits"].nunique() < 2:
        raise DataError("bench_scale runs need at least two qubit counts on 1 rank to fit the 2^n scaling")
    slope, intercept = np.polyfit(single["final.n_qubits"], np.log2(single["final.time_per_pass_s"]), 1)
    largest = single[single["final.n_qubits"] >= single["final.n_qubits"].max() - 2]
    if "final.achieved_gbps" in largest and largest["final.achieved_gbps"].notna().all():
        bandwidth = float(np.median(largest["final.achieved_gbps"])) * 1e9  # the benchmark's own per-pass figure
    else:
        bandwidth = float(np.median(largest["final.bytes_moved"] / largest["final.time_per_pass_s"]))
    nominal = config.nominal()
    overrides = {"gpu.memory_bandwidth_Bps": bandwidth, "gpu.bandwidth_efficiency": 1.0}
    notes = [f"time per gate pass fitted as 2^({slope:.3f}·n + {intercept:.2f}) s on 1 rank "
             f"({len(single)} runs, n = {int(single['final.n_qubits'].min())}..{int(single['final.n_qubits'].max())})",
             f"effective bandwidth {bandwidth / 1e9:.1f} GB/s measured at the largest sizes "
             f"(roofline assumed {nominal['gpu.memory_bandwidth_Bps'] * nominal['gpu.bandwidth_efficiency'] / 1e9:.0f} GB/s)"]
    if "energy.mean_watts" in single and single["energy.mean_watts"].notna().any():
        watts = float((single["energy.mean_watts"] / single["final.ranks"]).median())
        method = ", ".join(sorted(single["energy.method"].dropna().astype(str).unique())) if "energy.method" in single else "?"
        overrides["gpu.device_power_W"] = watts
        notes.append(f"device power {watts:.0f} W per rank from the runs' energy meter (method: {method})")
    multi = bench[(bench["final.ranks"] > 1)]
    if {"final.comm_bytes", "final.comm_time_s"} <= set(multi.columns):
        multi = multi[(multi["final.comm_time_s"] > 0) & (multi["final.comm_bytes"] > 0)]
        if not multi.empty:
            link = float(np.median(multi["final.comm_bytes"] / multi["final.comm_time_s"]))
            overrides["gpu.nvlink_bandwidth_Bps"] = link
            overrides["gpu.network_bandwidth_Bps"] = min(link, nominal["gpu.network_bandwidth_Bps"])
            notes.append(f"exchange bandwidth {link / 1e9:.1f} GB/s measured between ranks (used inside a node; "
                         "across nodes the smaller of it and the configured network)")
    return MeasuredGpu(overrides, notes, {"slope": float(slope), "intercept": float(intercept)})


# --- evaluation --------------------------------------------------------------------------------------

def energies(config: CrossoverConfig, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    n = config.qubits
    return model.gpu_energy_J(n, config.ansatz, params), model.qpu_energy_J(n, config.ansatz, params)


def crossover_of(config: CrossoverConfig, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    gpu, qpu = energies(config, params)
    return model.crossover(config.qubits, np.broadcast_to(gpu, np.broadcast_shapes(gpu.shape, qpu.shape)),
                           np.broadcast_to(qpu, np.broadcast_shapes(gpu.shape, qpu.shape)))


def sample_parameters(config: CrossoverConfig, base: Mapping[str, float], fixed: set[str]) -> dict[str, Any]:
    """Monte Carlo draws ([samples, 1]) of every parameter with a range, except those in `fixed`."""
    rng = np.random.default_rng(config.seed)
    drawn: dict[str, Any] = dict(base)
    for name, parameter in config.parameters.items():
        if not parameter.varies or name in fixed:
            continue
        if parameter.distribution == "loguniform":
            values = np.exp(rng.uniform(np.log(parameter.low), np.log(parameter.high), config.samples))
        else:
            values = rng.uniform(parameter.low, parameter.high, config.samples)
        drawn[name] = values[:, None]
    return drawn


def _solve_for_target(config: CrossoverConfig, base: Mapping[str, float], name: str, target: float) -> float:
    """The value of one parameter (others at `base`) whose fractional crossover equals `target`, or NaN.

    Searches 100× beyond the parameter's range on a log grid, then refines by bisection.
    """
    parameter = config.parameters[name]
    low = max(parameter.low or parameter.value, 1e-12) / 100 if parameter.low != 0 else max(parameter.high, 1) / 1e4
    high = (parameter.high or parameter.value) * 100
    grid = np.geomspace(low, high, 161)
    values = crossover_of(config, {**base, name: grid[:, None]})[1] - target
    sign_change = np.nonzero(np.diff(np.sign(values)) != 0)[0]
    sign_change = [i for i in sign_change if np.isfinite(values[i]) and np.isfinite(values[i + 1])]
    if not sign_change:
        return float("nan")
    a, b = grid[sign_change[0]], grid[sign_change[0] + 1]
    fa = values[sign_change[0]]
    for _ in range(40):
        mid = np.sqrt(a * b)
        fm = crossover_of(config, {**base, name: mid})[1][0] - target
        if np.sign(fm) == np.sign(fa):
            a, fa = mid, fm
        else:
            b = mid
    return float(np.sqrt(a * b))


def sensitivity(config: CrossoverConfig, base: Mapping[str, float]) -> pd.DataFrame:
    """One parameter at a time at the ends of its range (others at `base`), and the value each target needs."""
    nominal = float(crossover_of(config, base)[1][0])
    rows = []
    for name, parameter in config.parameters.items():
        if not parameter.varies:
            continue
        ends = crossover_of(config, {**base, name: np.array([[parameter.low], [parameter.high]])})[1]
        row = {"parameter": name, "value": base[name], "low": parameter.low, "high": parameter.high,
               "crossover_at_low": float(ends[0]), "crossover_at_high": float(ends[1]),
               "swing": float(abs(ends[1] - ends[0])), "source": parameter.source}
        for target in config.targets:
            row[f"value_for_{target['qubits']}"] = _solve_for_target(config, base, name, float(target["qubits"]))
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("swing", ascending=False).reset_index(drop=True)
    table.attrs["nominal_crossover"] = nominal
    return table


def scenario_changes(scenario: Mapping, fixed: set[str]) -> dict[str, float]:
    """A scenario's parameter changes, except those a measurement has fixed."""
    return {key: value for key, value in scenario["set"].items() if key not in fixed}


def scenario_table(config: CrossoverConfig, base: Mapping[str, float], fixed: set[str] = frozenset()) -> pd.DataFrame:
    """The crossover of each named assumption set (measured parameters in `fixed` are not overridden)."""
    rows = []
    for scenario in config.scenarios:
        changes = scenario_changes(scenario, fixed)
        params = {**base, **changes}
        integer, fraction = crossover_of(config, params)
        rows.append({"scenario": scenario["name"], "crossover_qubits": float(integer[0]),
                     "crossover_fractional": float(fraction[0]),
                     "changes": ", ".join(f"{k}={v:g}" for k, v in changes.items()) or "none",
                     "description": " ".join(str(scenario.get("description", "")).split())})
    return pd.DataFrame(rows)
