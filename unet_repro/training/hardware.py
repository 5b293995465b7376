"""Where a run computes, in which precision, and with how many data-loading processes: each decided once, from the
run's settings and the machine, then passed on (to training, validation, scoring and prediction) and recorded."""
from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass

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


@dataclass(frozen=True)
class Precision:
    """The arithmetic of a run: bf16 autocast or float32 for training and for evaluation (validation, the choice of
    ``best.pt``, final scoring, prediction), and whether float32 convolutions and matrix products may use TF32."""

    train_bf16: bool
    eval_bf16: bool
    tf32: bool = False

    @property
    def name(self) -> str:
        """E.g. ``bf16 autocast`` or ``bf16 autocast training, float32 evaluation``."""
        def word(bf16: bool) -> str:
            return "bf16 autocast" if bf16 else ("TF32" if self.tf32 else "float32")
        train, evaluate = word(self.train_bf16), word(self.eval_bf16)
        return train if train == evaluate else f"{train} training, {evaluate} evaluation"

    def record(self) -> dict[str, object]:
        return {**asdict(self), "name": self.name}


def decide_precision(bf16: bool, device: torch.device) -> Precision:
    """The precision of a run on `device` (``TrainConfig.bf16``: bf16 wanted where it is native).

    * CUDA: bf16 autocast for training and evaluation alike, or with ``bf16=False`` true float32 for both (TF32 off,
      which `apply_precision` sets: PyTorch lets cuDNN convolutions use TF32 by default).
    * CPU with native bf16 (AVX512-BF16 / AMX): bf16 autocast for training, float32 for evaluation: evaluation is a
      small part of a CPU run, and float32 keeps the published CPU results reproducible as they were scored.
    * other CPUs: float32 (emulated bf16 is slower).
    """
    if device.type == "cuda":
        return Precision(train_bf16=bf16, eval_bf16=bf16, tf32=False)
    native = bf16 and device.type == "cpu" and cpu_has_native_bf16()
    return Precision(train_bf16=native, eval_bf16=False, tf32=False)


def apply_precision(precision: Precision, device: torch.device) -> None:
    """Set the process-wide float32 switches that `precision` implies (CUDA: TF32 on or off)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = precision.tf32
        torch.backends.cudnn.allow_tf32 = precision.tf32


def decide_workers(workers: int | None, device: torch.device) -> int:
    """Data-loading processes: as set, or chosen from the machine: none on a CPU (the cores compute the network),
    on a GPU one per core left after the main process and one spare, at most 8 (a 572 px tile with elastic
    deformation takes about 10 ms of one core; 8 workers feed about 800 tiles/s)."""
    if workers is not None:
        return workers
    if device.type != "cuda":
        return 0
    return max(0, min(8, (os.cpu_count() or 1) - 2))


__all__ = ["Precision", "apply_precision", "cpu_has_native_bf16", "decide_precision", "decide_workers",
           "resolve_device"]
