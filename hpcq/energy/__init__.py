"""Energy: measured power and energy of a run (NVML, AMD SMI, RAPL, or a labelled estimate), and the
GPU-versus-QPU inference-energy crossover model."""
