"""Which accelerator a tensor lives on, as the `auto` choices need it: NVIDIA (CUDA), AMD (ROCm/HIP, which torch
also calls "cuda") or the CPU. cuQuantum runs on NVIDIA GPUs only, so no `auto` choice may take it on ROCm."""

from __future__ import annotations

import importlib

import torch

ACCELERATORS = ("cpu", "nvidia", "amd")


def accelerator_of(device: torch.device) -> str:
    """"nvidia", "amd" or "cpu" for a torch device (a ROCm build of torch names its GPUs "cuda" too)."""
    if device.type != "cuda":
        return "cpu"
    return "amd" if torch.version.hip else "nvidia"


def cuquantum_installed(module: str) -> bool:
    """Whether a cuquantum-python module ("cuquantum.bindings.custatevec", "cuquantum.tensornet") imports; it
    imports without a GPU, so this says nothing about a device."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
