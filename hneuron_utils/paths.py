"""Where things live: the project root, the asset cache, a run's output folders."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The workbook's root folder (holds params/, data/, notebooks/). ``HNEURON_ROOT`` overrides."""
    env = os.environ.get("HNEURON_ROOT")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parents[1]


MODEL_DIRS = ("gguf", "models", "locks")
"""Folders of the cache that hold model files, not stages: an empty stage cache links them."""


def link_model_dirs(stage_cache: Path) -> None:
    """Link the real cache's model folders (:data:`MODEL_DIRS`) into an empty stage cache."""
    root = cache_root()
    for sub in MODEL_DIRS:
        (root / sub).mkdir(parents=True, exist_ok=True)
        (stage_cache / sub).symlink_to(root / sub)


def cache_root() -> Path:
    """Cache for model assets and expensive stages: ``$HNEURON_CACHE``, else ``~/.cache/hneuron``."""
    env = os.environ.get("HNEURON_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "hneuron").resolve()


def resolve(path: str | Path) -> Path:
    """A path relative to the project root (absolute paths are kept)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


def run_dir(run_name: str) -> Path:
    """``results/<run_name>/`` — executed notebooks and result tables of one run."""
    return project_root() / "results" / run_name


def figures_dir(run_name: str, figures_dir: str | None) -> Path:
    """Where a run's figures go: ``figures_dir`` if given, else ``results/<run_name>/figures``."""
    return resolve(figures_dir) if figures_dir else run_dir(run_name) / "figures"
