"""A short report on the software and hardware a notebook runs on."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform

import torch

from hneuron_utils.models import cpu_supports_bf16

PACKAGES = ("torch", "transformers", "nnsight", "gguf", "accelerate", "papermill", "scikit-learn",
            "matplotlib", "seaborn", "pandas", "numpy")


def report() -> dict[str, str]:
    """Versions of the pinned packages, CPU threads, bf16 support, CUDA availability."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for p in PACKAGES:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = "NOT INSTALLED"
    out["cpu cores (os)"] = str(os.cpu_count())
    out["torch threads"] = str(torch.get_num_threads())
    out["cpu native bf16 (avx512_bf16/amx)"] = str(cpu_supports_bf16())
    out["cpu capability (torch)"] = torch.backends.cpu.get_cpu_capability()
    out["cuda available"] = str(torch.cuda.is_available())
    return out


KERNEL_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")


def kernels() -> dict[str, str]:
    """What decides this machine's floating-point kernels (and so a run's exact numbers): torch's CPU
    capability, native bfloat16 support, and the environment variables that cap oneDNN, ATen and MKL."""
    out = {"cpu capability (torch)": torch.backends.cpu.get_cpu_capability(),
           "native bf16 (avx512_bf16/amx)": str(cpu_supports_bf16())}
    return out | {var: os.environ.get(var, "") for var in KERNEL_VARIABLES}
