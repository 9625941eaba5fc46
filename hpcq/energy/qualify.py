"""Which bench_scale measurements may replace an assumption of the crossover model, and which may not.

A measurement replaces a GPU parameter only when it can carry it:

* device: it ran on the device class the model describes (a GPU); CPU runs are fitted and reported as a CPU
  node's figures, never fed to the GPU side;
* regime (time per pass, memory bandwidth): 1-rank runs whose state is well beyond the last-level cache
  (`hpcq.energy.bandwidth_regime`), at least `MIN_SIZES` qubit counts, and a time per pass that grows 2^(b·n)
  with b within `SLOPE_RANGE`, as memory traffic does;
* power: energy from a hardware meter of that device (NVML, AMD SMI), metered for at least
  `MIN_METERED_S` (the counters refresh every 20-100 ms), on runs in the memory-bound regime;
* exchange bandwidth: multi-rank runs that exchanged, with messages large enough (`MIN_EXCHANGE_BYTES`) to
  time bandwidth rather than latency. Runs on one node say nothing of the network between nodes.

Everything else is listed with the reason, per run and per parameter, and the model keeps the configured value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hpcq.errors import DataError
from hpcq.energy.bandwidth_regime import CACHE_MULTIPLE, cache_reasons

MODELLED_DEVICE = "gpu"
SLOPE_RANGE = (0.9, 1.1)
MIN_SIZES = 3
MIN_METERED_S = 1.0
MIN_EXCHANGE_BYTES = 2**20
METERS = {"gpu": ("nvml", "amdsmi"), "cpu": ("rapl",)}
REQUIRED_COLUMNS = ("final.n_qubits", "final.ranks", "final.time_per_pass_s", "final.bytes_moved")
TIME = "time per pass, memory bandwidth"
POWER = "device power"
EXCHANGE = "exchange bandwidth"


@dataclass(frozen=True)
class Rejection:
    """One run that cannot feed one measured quantity, and why."""

    run: str
    quantity: str
    reason: str


@dataclass
class PassFit:
    """time per pass = 2^(slope·n + intercept) s on one rank, and the bandwidth at the largest sizes."""

    device: str
    label: str
    slope: float
    intercept: float
    qubits: list[int]
    runs: list[str]
    bandwidth_Bps: float
    not_in_regime: str = ""  # why the fit does not describe the memory-bound regime; "" when it does

    def describe(self) -> str:
        regime = "in the memory-bound regime" if not self.not_in_regime else f"not usable: {self.not_in_regime}"
        return (f"{self.label}: time per gate pass 2^({self.slope:.3f}·n {self.intercept:+.2f}) s on 1 rank over "
                f"n = {', '.join(map(str, self.qubits))}; {self.bandwidth_Bps / 1e9:.1f} GB/s at the largest sizes; "
                f"{regime}")


@dataclass
class Measurements:
    """The parameters measured (with the runs behind each), the runs left out, and every fit made."""

    overrides: dict[str, float] = field(default_factory=dict)
    runs_of: dict[str, list[str]] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    fits: list[PassFit] = field(default_factory=list)

    def measure(self, parameter: str, value: float, runs: list[str]) -> None:
        self.overrides[parameter] = float(value)
        self.runs_of[parameter] = list(runs)

    def reject(self, table: pd.DataFrame, quantity: str, reason: str | pd.Series) -> None:
        reasons = reason if isinstance(reason, pd.Series) else pd.Series(reason, index=table.index)
        self.rejections += [Rejection(run, quantity, why) for run, why in zip(table["_run"], reasons[table.index])]


def device_class(device: object) -> str:
    """"gpu" for torch's cuda devices (ROCm builds call theirs cuda too), "cpu", or "unknown"."""
    text = str(device) if device is not None and not pd.isna(device) else ""
    return "gpu" if text.startswith("cuda") else "cpu" if text.startswith("cpu") else "unknown"


def _run_names(bench: pd.DataFrame) -> pd.Series:
    if "run_path" not in bench.columns:
        return bench["run_id"].astype(str)
    return bench["run_path"].map(lambda p: "/".join(Path(str(p)).parts[-2:]))


def _device_label(table: pd.DataFrame, kind: str) -> str:
    column = "env.gpu_devices" if kind == "gpu" else "env.cpu_model"
    names = sorted(set(table[column].dropna().astype(str))) if column in table.columns else []
    hosts = sorted(set(table["env.host"].dropna().astype(str))) if "env.host" in table.columns else []
    return f"{kind.upper()} {' / '.join(names) or '(model not recorded)'} on {', '.join(hosts) or '?'}"


def bench_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The bench_scale rows of an aggregated table, each with a short `_run` name; an error naming the fix
    when there are none."""
    bench = runs[runs["run_kind"] == "bench_scale"] if "run_kind" in runs.columns else runs.iloc[0:0]
    if bench.empty or not set(REQUIRED_COLUMNS) <= set(bench.columns):
        raise DataError(f"no usable bench_scale runs (need columns {list(REQUIRED_COLUMNS)}); run `hpcq bench scale` "
                        "or leave out --results to use the configured roofline")
    bench = bench.dropna(subset=list(REQUIRED_COLUMNS))
    return bench.assign(_run=_run_names(bench), _device=bench.get("device", pd.Series(index=bench.index)).map(device_class))


def fit_passes(single: pd.DataFrame, kind: str, not_in_regime: str = "") -> PassFit:
    """Least-squares fit of log2(time per pass) against n, and the median bandwidth of the 3 largest sizes."""
    qubits = single["final.n_qubits"]
    slope, intercept = np.polyfit(qubits, np.log2(single["final.time_per_pass_s"]), 1)
    largest = single[qubits >= sorted(qubits.unique())[-min(3, qubits.nunique())]]
    bandwidth = float(np.median(largest["final.bytes_moved"] / largest["final.time_per_pass_s"]))
    return PassFit(kind, _device_label(single, kind), float(slope), float(intercept),
                   sorted(int(n) for n in qubits.unique()), sorted(single["_run"]), bandwidth, not_in_regime)


def _fit_time(bench: pd.DataFrame, kind: str, found: Measurements) -> PassFit | None:
    """The pass-time fit of one device class; its runs rejected (for TIME) with the reason when it does not
    qualify. Returns the fit when it qualifies."""
    single = bench[(bench["_device"] == kind) & (bench["final.ranks"] == 1)]
    if single.empty:
        return None
    reasons = cache_reasons(single)
    beyond = single[reasons == ""]
    found.reject(single[reasons != ""], TIME, reasons)
    sizes = beyond["final.n_qubits"].nunique()
    if sizes < MIN_SIZES:
        reason = (f"only {sizes} qubit count(s) beyond {CACHE_MULTIPLE:g}x the cache on {kind.upper()}; a fit of "
                  f"the 2^n regime needs at least {MIN_SIZES}: run `hpcq bench scale` at larger sizes")
        if sizes == 0:
            reason = f"no run beyond the cache: the largest, {reasons[single['final.n_qubits'].idxmax()]}"
        found.reject(beyond, TIME, reason)
        if single["final.n_qubits"].nunique() >= 2:
            found.fits.append(fit_passes(single, kind, not_in_regime=reason))
        return None
    fit = fit_passes(beyond, kind)
    low, high = SLOPE_RANGE
    if not low <= fit.slope <= high:
        fit.not_in_regime = (f"time per pass grows 2^({fit.slope:.2f}·n) over n = {fit.qubits}; memory-bound "
                             f"sweeps grow 2^n (accepted slope {low}-{high} per qubit)")
        found.reject(beyond, TIME, fit.not_in_regime)
    found.fits.append(fit)
    return None if fit.not_in_regime else fit


def _meter_reason(row: pd.Series, kind: str) -> str:
    method = str(row.get("energy.method", "") or "none")
    if method == "estimate":
        return "its energy is an estimate (CPU busy time x assumed watts), not a meter reading"
    if method not in METERS[kind]:
        return f"its energy meter {method!r} does not meter a {kind.upper()} (needs {' or '.join(METERS[kind])})"
    duration = float(row.get("energy.duration_s", 0.0) or 0.0)
    if duration < MIN_METERED_S:
        return (f"metered for {duration:.2f} s; the counters refresh every 20-100 ms, so at least {MIN_METERED_S:g} s "
                "is needed (raise --min-seconds)")
    if not float(row.get("energy.mean_watts", 0.0) or 0.0) > 0:
        return "its meter read no energy"
    return ""


def _fit_power(bench: pd.DataFrame, found: Measurements) -> None:
    runs = bench[bench["_device"] == MODELLED_DEVICE]
    if runs.empty:
        return
    cache = cache_reasons(runs)
    reasons = pd.Series([cache[i] or _meter_reason(row, MODELLED_DEVICE) for i, row in runs.iterrows()],
                        index=runs.index, dtype=object)
    good = runs[reasons == ""]
    found.reject(runs[reasons != ""], POWER, reasons)
    if good.empty:
        return
    ranks = good["energy.ranks_metered"] if "energy.ranks_metered" in good.columns else good["final.ranks"]
    watts = float(np.median(good["energy.mean_watts"] / ranks.fillna(good["final.ranks"])))
    found.measure("gpu.device_power_W", watts, sorted(good["_run"]))


def _exchange_reason(row: pd.Series) -> str:
    exchanges = float(row.get("final.exchanges", 0.0) or 0.0)
    sent, seconds = float(row.get("final.comm_bytes", 0.0) or 0.0), float(row.get("final.comm_time_s", 0.0) or 0.0)
    if not (exchanges > 0 and sent > 0 and seconds > 0):
        return "it exchanged nothing between ranks"
    if sent / exchanges < MIN_EXCHANGE_BYTES:
        return (f"{sent / exchanges / 2**10:,.0f} KiB per exchange times latency, not bandwidth "
                f"(needs at least {MIN_EXCHANGE_BYTES / 2**20:g} MiB)")
    return ""


def _fit_exchange(bench: pd.DataFrame, found: Measurements) -> None:
    runs = bench[(bench["_device"] == MODELLED_DEVICE) & (bench["final.ranks"] > 1)]
    if runs.empty:
        return
    reasons = pd.Series([_exchange_reason(row) for _, row in runs.iterrows()], index=runs.index, dtype=object)
    good = runs[reasons == ""]
    found.reject(runs[reasons != ""], EXCHANGE, reasons)
    if not good.empty:
        link = float(np.median(good["final.comm_bytes"] / good["final.comm_time_s"]))
        found.measure("gpu.nvlink_bandwidth_Bps", link, sorted(good["_run"]))


def qualify(runs: pd.DataFrame) -> Measurements:
    """The GPU parameters that the bench_scale runs in `runs` can carry, and every run left out with why."""
    bench = bench_runs(runs)
    found = Measurements()
    other = bench[bench["_device"] != MODELLED_DEVICE]
    found.reject(other, "all GPU parameters", other["device"].map(
        lambda d: f"it ran on {d!s}; the model's GPU side takes only GPU runs") if "device" in other.columns
        else "its device is not recorded")
    fit = _fit_time(bench, MODELLED_DEVICE, found)
    if fit is not None:
        found.measure("gpu.memory_bandwidth_Bps", fit.bandwidth_Bps, fit.runs)
        found.measure("gpu.bandwidth_efficiency", 1.0, fit.runs)
    _fit_power(bench, found)
    _fit_exchange(bench, found)
    found.fits = _all_fits(bench, found.fits)
    return found


def _all_fits(bench: pd.DataFrame, gpu_fits: list[PassFit]) -> list[PassFit]:
    """The GPU fit (if any) and, for the report only, a fit of each other device class's 1-rank runs (their
    runs are already rejected for the GPU side as a whole)."""
    fits = list(gpu_fits)
    for kind in ("cpu", "unknown"):
        scratch = Measurements()
        _fit_time(bench, kind, scratch)
        fits += scratch.fits
    return fits
