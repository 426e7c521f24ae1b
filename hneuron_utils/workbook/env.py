"""A short report on the software and hardware a notebook runs on."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform

import torch

from hneuron_utils.models import _cpu_supports_bf16

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
    out["cpu native bf16 (avx512_bf16/amx)"] = str(_cpu_supports_bf16())
    out["cuda available"] = str(torch.cuda.is_available())
    return out
