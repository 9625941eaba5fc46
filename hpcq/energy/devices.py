"""GPU discovery through the vendor management libraries (NVML, AMD SMI), and which of their devices a torch
device is.

Both libraries enumerate physical devices regardless of CUDA_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES /
HIP_VISIBLE_DEVICES, which is what energy accounting wants: a counter belongs to a physical device. torch
numbers only the devices it sees (`cuda:0` is the first visible one), so a rank that meters `cuda:N` must
meter NVML's / AMD SMI's device `physical_gpu(N, ...)`, not NVML's device N: with `--gpus-per-task=1` every
rank's torch device is `cuda:0`, on a different physical GPU. CUDA also orders devices fastest first unless
CUDA_DEVICE_ORDER=PCI_BUS_ID, and NVML by PCI bus, so on NVIDIA the device's UUID decides where torch gives it.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from hpcq.errors import ConfigError

#: the variables that choose the visible GPUs, applied in this order: ROCm's runtime first (physical
#: indices or UUIDs), then HIP's (indices into what ROCr left, CUDA_VISIBLE_DEVICES read when HIP's is unset)
VISIBLE_DEVICE_VARIABLES = {"nvidia": (("CUDA_VISIBLE_DEVICES",),),
                            "amd": (("ROCR_VISIBLE_DEVICES",), ("HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"))}


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

def logical_gpu(local_rank: int, visible: int) -> int:
    """torch's device index for a rank: its rank on the node (not in the job) modulo the GPUs it sees, so the
    ranks of each node spread over that node's GPUs."""
    if visible < 1:
        raise ConfigError("no GPU is visible to this rank (CUDA_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES empty?); "
                          "run on a GPU node or use --device cpu")
    return local_rank % visible


def _uuid_key(uuid: str) -> str:
    """A UUID as NVML (GPU-xxxxxxxx-xxxx-...), torch (xxxxxxxx-xxxx-...) or ROCr (GPU-<hex>) write it, compared
    without prefix, dashes or case."""
    text = uuid.strip().lower()
    return text.removeprefix("gpu-").replace("-", "")


def _resolve(entry: str, current: list[int], physical_uuids: Sequence[str], variable: str) -> int:
    """One *_VISIBLE_DEVICES entry: an index into the devices still visible, or a (prefix of a) UUID."""
    if entry.isdigit():
        if int(entry) >= len(current):
            raise ConfigError(f"{variable} names device {entry} but only {len(current)} are there; "
                              f"fix {variable}")
        return current[int(entry)]
    matches = [i for i, uuid in enumerate(physical_uuids) if _uuid_key(uuid).startswith(_uuid_key(entry))]
    if len(matches) != 1 or matches[0] not in current:
        raise ConfigError(f"{variable} entry {entry!r} matches {len(matches)} of this node's GPUs; "
                          "name the GPU by "
                          f"index, or by the UUID nvidia-smi -L / amd-smi list shows")
    return matches[0]


def physical_gpu(logical: int, vendor: str, environ: Mapping[str, str], physical_uuids: Sequence[str],
                 logical_uuid: str | None = None) -> int:
    """The NVML ("nvidia") or AMD SMI ("amd") index of torch's device `cuda:<logical>`: by the device's UUID
    when torch gives it, else by applying the visible-device variables of `environ` to the physical devices
    (`physical_uuids`, in the management library's order)."""
    if logical_uuid:
        matches = [i for i, uuid in enumerate(physical_uuids) if _uuid_key(uuid) == _uuid_key(logical_uuid)]
        if len(matches) == 1:
            return matches[0]
    current = list(range(len(physical_uuids)))
    for names in VISIBLE_DEVICE_VARIABLES[vendor]:
        variable = next((name for name in names if name in environ), None)
        if variable is None:
            continue
        # the runtimes stop at the first entry they cannot read; an empty value hides every device
        entries = [e.strip() for e in environ[variable].split(",") if e.strip()]
        current = [_resolve(entry, current, physical_uuids, variable) for entry in entries]
    if not 0 <= logical < len(current):
        raise ConfigError(f"torch device cuda:{logical} is not among the {len(current)} GPU(s) this rank sees "
                          f"({', '.join(n for names in VISIBLE_DEVICE_VARIABLES[vendor] for n in names)}); "
                          f"use cuda:0..cuda:{max(0, len(current) - 1)}")
    return current[logical]


def physical_gpu_of(index: int) -> int | None:
    """The NVML / AMD SMI index of torch's `cuda:<index>` on this node, None when neither library sees a GPU
    (then no GPU counter can be read anyway)."""
    import torch

    if torch.version.hip:
        handles, vendor, logical_uuid = amdsmi_handles(), "amd", None
        uuids = [amdsmi_uuid(h) for h in handles or []]
    else:
        handles, vendor = nvml_handles(), "nvidia"
        uuids = [nvml_uuid(h) for h in handles or []]
        logical_uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", "") or "")
    if not handles:
        return None
    return physical_gpu(index, vendor, os.environ, uuids, logical_uuid)


def nvml_uuid(handle: Any) -> str:
    import pynvml

    uuid = pynvml.nvmlDeviceGetUUID(handle)
    return uuid.decode() if isinstance(uuid, bytes) else str(uuid)


def amdsmi_uuid(handle: Any) -> str:
    import amdsmi

    try:
        return str(amdsmi.amdsmi_get_gpu_device_uuid(handle))
    except amdsmi.AmdSmiException:
        return ""
