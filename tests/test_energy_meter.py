"""EnergyMeter with real readings: the estimate path always, RAPL/NVML/AMD SMI where this node has them."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from hpcq.energy import EnergyMeter, open_sampler
from hpcq.energy import samplers
from hpcq.errors import ConfigError, ResourceError
from hpcq.results import read_run, write_run


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _check_consistent(reading) -> None:
    """Totals, per-device values and the power timeline must tell the same story."""
    assert reading.joules == pytest.approx(float(reading.device_joules.sum()))
    assert reading.mean_watts == pytest.approx(reading.joules / reading.duration_s)
    steps = np.diff(np.concatenate([[0.0], reading.t_s]))
    assert float((reading.power_w.sum(axis=1) * steps).sum()) == pytest.approx(reading.joules, rel=1e-6, abs=1e-9)
    assert np.all(np.diff(reading.t_s) > 0)


def _measured(method: str, work, **meter_options):
    """Meter `work()` with `method`; the reading must be positive and self-consistent."""
    with EnergyMeter(method, **meter_options) as meter:
        work()
    reading = meter.reading
    assert reading.method == method and reading.joules > 0
    _check_consistent(reading)
    return reading


def test_estimate_charges_this_process_cpu_time():
    watts = 80.0
    cpus = os.cpu_count()
    cpu0 = time.process_time()
    with EnergyMeter("estimate", interval_s=0.05, full_load_watts=watts) as meter:
        _spin(0.6)
    used = time.process_time() - cpu0  # independent clock (getrusage), not psutil
    reading = meter.reading
    assert reading.method == "estimate" and "ESTIMATE" in reading.notes
    assert reading.joules == pytest.approx(watts / cpus * used, rel=0.15, abs=0.3)
    assert reading.joules > 0.2 * watts / cpus * 0.6  # a spinning core was charged
    assert len(reading.t_s) >= 5  # the background thread sampled during the block
    _check_consistent(reading)


def test_estimate_of_a_sleeping_block_is_near_zero():
    with EnergyMeter("estimate", interval_s=0.05, full_load_watts=80.0) as meter:
        time.sleep(0.4)
    assert meter.reading.joules < 0.05 * 80.0 * 0.4


def test_system_scope_estimate_sees_at_least_this_process():
    watts = 80.0
    with EnergyMeter("estimate", interval_s=0.05, full_load_watts=watts, estimate_scope="system") as meter:
        cpu0 = time.process_time()
        _spin(0.5)
        used = time.process_time() - cpu0
    assert meter.reading.joules >= 0.8 * watts / os.cpu_count() * used


def test_reading_fits_the_energy_group_of_a_run_file(tmp_path):
    with EnergyMeter(interval_s=0.02) as meter:
        _spin(0.1)
    record = read_run(write_run(tmp_path / "r.h5", kind="test", config={}, energy=meter.reading.as_dict()))
    assert record.energy["method"] == meter.reading.method
    assert record.energy["joules"] == meter.reading.joules
    assert record.energy["devices"] == meter.reading.devices
    assert record.energy["power_w"].shape == meter.reading.power_w.shape


def test_a_meter_can_be_reused():
    meter = EnergyMeter("estimate", interval_s=0.02)
    with meter:
        _spin(0.2)
    first = meter.reading
    with meter:
        time.sleep(0.1)
    assert meter.reading.duration_s < first.duration_s
    assert meter.reading.t_s[0] < 0.1  # the second reading starts afresh


def test_bad_arguments_name_the_fix():
    with pytest.raises(ConfigError, match="interval_s"):
        EnergyMeter(interval_s=0)
    with pytest.raises(ConfigError, match="unknown"):
        open_sampler("joulemeter")


def test_unavailable_explicit_method_says_why():
    if not isinstance(samplers.probe_nvml(), samplers.Unavailable):
        pytest.skip("NVML is usable on this node")
    with pytest.raises(ResourceError, match="nvml: .*use method='auto'"):
        open_sampler("nvml")


def test_counter_unwrap():
    assert samplers.unwrap_delta(100, 250, 1000) == 150
    assert samplers.unwrap_delta(900, 50, 1000) == 150
    counters = samplers._WrappingCounters([900], [1000])
    assert counters.update([950]) == [50]
    assert counters.update([20]) == [120]


def test_mi250x_odd_gcds_are_dropped():
    assert samplers._mi250x_odd_gcd("AMD Instinct MI250X", 1)
    assert not samplers._mi250x_odd_gcd("AMD Instinct MI250X", 2)
    assert not samplers._mi250x_odd_gcd("AMD Instinct MI300X", 1)


def _fake_zone(root, name, label, energy, max_range=2**32):
    zone = root / name
    zone.mkdir()
    (zone / "name").write_text(label + "\n")
    (zone / "energy_uj").write_text(f"{energy}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_range}\n")
    return zone


def test_rapl_reads_package_zones_only_and_unwraps(tmp_path):
    """The sysfs layout of powercap (Documentation/power/powercap): packages, sub-zones, psys."""
    package = _fake_zone(tmp_path, "intel-rapl:0", "package-0", 999_000_000, max_range=1_000_000_000)
    _fake_zone(tmp_path, "intel-rapl:0:0", "core", 5)
    _fake_zone(tmp_path, "intel-rapl:1", "psys", 7)
    sampler = samplers.probe_rapl(tmp_path)
    assert isinstance(sampler, samplers.RaplSampler)
    assert sampler.devices == ["intel-rapl:0: package-0"]
    (package / "energy_uj").write_text("2000000\n")  # wrapped past 1e9 µJ
    np.testing.assert_allclose(sampler.read(), [3.0])


def test_rapl_absent_gives_reason(tmp_path):
    found = samplers.probe_rapl(tmp_path / "missing")
    assert isinstance(found, samplers.Unavailable) and "does not exist" in found.reason


def test_rapl_real_counters():
    found = samplers.probe_rapl()
    if isinstance(found, samplers.Unavailable):
        pytest.skip(f"RAPL not readable here: {found.reason}")
    reading = _measured("rapl", lambda: _spin(0.5), interval_s=0.05)
    assert 0.5 < reading.mean_watts < 2000  # a CPU package under load


@pytest.mark.gpu
def test_nvml_real_counter():
    found = samplers.probe_nvml()
    if isinstance(found, samplers.Unavailable):
        pytest.skip(f"NVML not usable here: {found.reason}")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("NVML sees a GPU but torch has no CUDA")
    a = torch.randn(4096, 4096, device="cuda")

    def matmuls():
        end = time.perf_counter() + 1.5
        while time.perf_counter() < end:
            (a @ a).clamp_(-1, 1)
            torch.cuda.synchronize()

    reading = _measured("nvml", matmuls, interval_s=0.1, devices=[torch.cuda.current_device()],
                        sync=torch.cuda.synchronize)
    assert 20 < reading.mean_watts < 1500


@pytest.mark.gpu
def test_amdsmi_real_counter():
    found = samplers.probe_amdsmi()
    if isinstance(found, samplers.Unavailable):
        pytest.skip(f"AMD SMI not usable here: {found.reason}")
    _measured("amdsmi", lambda: time.sleep(1.0), interval_s=0.1)  # idle GPUs still draw tens of watts
