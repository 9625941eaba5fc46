"""Energy: measured power and energy of a run (NVML, AMD SMI, RAPL, or a labelled estimate), and the
GPU-versus-QPU inference-energy crossover model (`hpcq energy`)."""

from hpcq.energy.meter import EnergyMeter, EnergyReading, open_sampler

__all__ = ["EnergyMeter", "EnergyReading", "open_sampler"]
