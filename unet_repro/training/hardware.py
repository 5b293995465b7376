"""Where and in which precision a run computes."""
from __future__ import annotations

import functools

import torch


def resolve_device(name: str) -> torch.device:
    """``auto``: the GPU when there is one, else the CPU; any other name as torch reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX): there bf16 autocast makes a training step of
    the U-Net about 2x faster than float32; elsewhere oneDNN emulates bf16 and it is slower."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: read the flags
        try:
            with open("/proc/cpuinfo") as f:
                flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_bf16(wanted: bool, device: torch.device) -> bool:
    """Whether training on `device` runs under bf16 autocast: asked for (``TrainConfig.bf16``) and native there."""
    if not wanted:
        return False
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())


def precision_name(bf16: bool) -> str:
    return "bf16 autocast" if bf16 else "float32"
