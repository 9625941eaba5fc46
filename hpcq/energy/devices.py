"""GPU discovery through the vendor management libraries (NVML, AMD SMI), without importing torch.

Both libraries enumerate physical devices regardless of CUDA_VISIBLE_DEVICES/HIP_VISIBLE_DEVICES, which
is what energy accounting wants: a counter belongs to a physical device.
"""

from __future__ import annotations

from typing import Any


def nvml_handles() -> list[Any] | None:
    """NVML device handles after nvmlInit, or None when NVML (library or driver) is unusable here."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        return [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except pynvml.NVMLError:
        return None


def amdsmi_handles() -> list[Any] | None:
    """AMD SMI processor handles after amdsmi_init, or None when amdsmi is unusable here."""
    try:
        import amdsmi
    except ImportError:
        return None
    try:
        amdsmi.amdsmi_init()
        return list(amdsmi.amdsmi_get_processor_handles())
    except amdsmi.AmdSmiException:
        return None


def nvml_name(handle: Any) -> str:
    import pynvml

    name = pynvml.nvmlDeviceGetName(handle)
    return name.decode() if isinstance(name, bytes) else str(name)


def amdsmi_name(handle: Any) -> str:
    import amdsmi

    try:
        return str(amdsmi.amdsmi_get_gpu_asic_info(handle).get("market_name", "AMD GPU"))
    except amdsmi.AmdSmiException:
        return "AMD GPU"


def gpu_names() -> list[str]:
    """Names of the GPUs on this node (NVIDIA first, then AMD); empty when there are none."""
    nvidia = nvml_handles() or []
    amd = amdsmi_handles() or []
    return [nvml_name(h) for h in nvidia] + [amdsmi_name(h) for h in amd]
