"""`hpcq energy`: the GPU-versus-QPU crossover qubit count, its uncertainty band and what drives it.

Reads and validates a crossover config (default: the shipped `crossover_default.yaml`) and evaluates the
model over it: the nominal crossover, Monte Carlo draws, one-at-a-time sensitivity, named scenarios. Which
GPU assumptions measurements may replace is `hpcq.energy.qualify`'s business.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpcq.energy import model
from hpcq.errors import ConfigError
from hpcq.yamlfile import parse_yaml, read_yaml_file

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


PARAMETER_KEYS = ("value", "range", "distribution", "source")
# The physically possible values of a parameter (its value and both ends of its range): every parameter is
# positive, except these, which may be zero, and fractions and factors with their own bounds.
ZERO_ALLOWED = {"gpu.node_overhead_W", "gpu.kernel_launch_s", "qpu.power_per_qubit_W", "qpu.native_1q_per_2q",
                "qpu.t_prep_s", "qpu.t_readout_s", "qpu.overhead_per_circuit_s"}
BOUNDS = {"gpu.bandwidth_efficiency": (0.0, 1.0), "gpu.usable_memory_fraction": (0.0, 1.0),
          "gpu.pue": (1.0, np.inf), "qpu.duty_factor": (1.0, np.inf)}


def refuse_unknown_keys(mapping: Mapping, allowed: tuple[str, ...], where: str) -> None:
    """A misspelt key (`maxx`) must not be silently ignored."""
    unknown = [key for key in mapping if key not in allowed]
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {unknown}; allowed: {list(allowed)}")


def _check_bounds(name: str, numbers: list[float]) -> None:
    low, high = BOUNDS.get(name, (0.0, np.inf))
    low_included = name in ZERO_ALLOWED or low > 0  # pue and duty factor may be exactly 1; fractions not 0
    for number in numbers:
        below = number < low if low_included else number <= low
        if below or number > high or not np.isfinite(number):
            allowed = f"{'>=' if low_included else '>'} {low:g}" + (f" and <= {high:g}" if np.isfinite(high) else "")
            raise ConfigError(f"energy parameter {name!r}: {number:g} is not physical; it must be {allowed}")


def _parameter(name: str, spec: Any) -> Parameter:
    if not isinstance(spec, Mapping) or "value" not in spec or not spec.get("source"):
        raise ConfigError(f"energy parameter {name!r} must be a mapping with 'value' and 'source' "
                          f"(the literature or measurement it comes from); got {spec!r}")
    refuse_unknown_keys(spec, PARAMETER_KEYS, f"energy parameter {name!r}")
    try:
        value = float(spec["value"])
        low, high = (float(v) for v in spec["range"]) if "range" in spec else (None, None)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"energy parameter {name!r}: value and range must be numbers ({err})") from err
    distribution = spec.get("distribution", "loguniform")
    if distribution not in DISTRIBUTIONS:
        raise ConfigError(f"energy parameter {name!r}: distribution {distribution!r} is not one of {DISTRIBUTIONS}")
    _check_bounds(name, [value] + ([low, high] if low is not None else []))
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


TOP_LEVEL_KEYS = ("qubits", "circuit", "gpu", "qpu", "monte_carlo", "targets", "scenarios")


def _scenario_value(scenario: Mapping, key: str, value: Any, parameters: Mapping[str, Parameter]) -> float:
    if key not in parameters:
        raise ConfigError(f"scenario {scenario.get('name')!r} sets unknown parameter {key!r}; "
                          "use a dotted name such as qpu.shots")
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"scenario {scenario.get('name')!r}: {key}={value!r} is not a number") from err
    _check_bounds(key, [number])
    return number


def parse_config(raw: Mapping, origin: str) -> CrossoverConfig:
    """Validate a crossover config; errors name the key and what it should be."""
    refuse_unknown_keys(raw, TOP_LEVEL_KEYS, origin)
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
    refuse_unknown_keys(circuit, ("layers", "connectivity", "reuploads"), f"{origin}: circuit")
    ansatz = model.Ansatz(*(_positive_int(circuit, key, "circuit") for key in ("layers", "connectivity", "reuploads")))
    qubits = raw.get("qubits", {})
    refuse_unknown_keys(qubits, ("min", "max"), f"{origin}: qubits")
    low, high = _positive_int(qubits, "min", "qubits"), _positive_int(qubits, "max", "qubits")
    if high <= low:
        raise ConfigError(f"qubits.max={high} must exceed qubits.min={low}")
    monte_carlo = raw.get("monte_carlo", {})
    refuse_unknown_keys(monte_carlo, ("samples", "seed", "interval"), f"{origin}: monte_carlo")
    interval = float(monte_carlo.get("interval", 0.9))
    if not 0 < interval < 1:
        raise ConfigError(f"monte_carlo.interval={interval} must lie in (0, 1), e.g. 0.9")
    scenarios = raw.get("scenarios") or [{"name": "nominal", "description": "the config values", "set": {}}]
    for scenario in scenarios:
        refuse_unknown_keys(scenario, ("name", "description", "set"), f"{origin}: scenario {scenario.get('name')!r}")
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
        origin = f"hpcq/energy/{DEFAULT_CONFIG}"
        raw = parse_yaml(resources.files("hpcq.energy").joinpath(DEFAULT_CONFIG).read_text(), origin)
    else:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"energy config {path} does not exist; omit --config to use the shipped default")
        origin, raw = str(path), read_yaml_file(path, "energy config")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"energy config {origin} must be a YAML mapping")
    return parse_config(raw, origin)


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
